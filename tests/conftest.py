"""Hypothesis: random in development runs, where new examples find new bugs; the same examples
in CI (CI=true), so a submission is judged by its own changes, not by a lucky draw."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")
