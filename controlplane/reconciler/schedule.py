"""Window arithmetic lives in controlplane.windows (the service layer needs it too); re-exported
here for the reconcilers."""

from __future__ import annotations

from controlplane.windows import in_daily_window, in_weekly_window, next_window_start, window_start

__all__ = ["in_daily_window", "in_weekly_window", "next_window_start", "window_start"]
