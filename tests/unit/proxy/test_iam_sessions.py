"""The 12-hour limit of HAProxy IAM fronts: `show sess` read, IAM sessions older than the limit
ended on the engine's clock (a fake one here: HAProxy's own ages are seconds), the others kept."""

from __future__ import annotations

from engine.proxy.iam_sessions import IAM_BACKEND, IamSessionReaper, parse_sessions

HOUR = 3600.0


def _line(sid: str, backend: str, age: str) -> str:
    return (f"{sid}: proto=tcpv4 src=127.0.0.1:40001 fe=endpoint be={backend} srv=node ts=00 epoch=0x1 "
            f"age={age} calls=3 rate=0 cpu=0 lat=0 rq[f=848000h,i=0,an=00h,rx=,wx=,ax=] rp[f=80048000h]")


def test_show_sess_is_read_with_haproxys_ages() -> None:
    text = "\n".join([_line("0x1a", IAM_BACKEND, "5s"), _line("0x2b", "node", "1m12s"), _line("0x3c", "iam", "12h0m"),
                      _line("0x4d", "iam", "2d3h"), "0x5e: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> "
                      "srv=<none> ts=00 epoch=0x2 age=0s calls=1", "garbage", _line("0x6f", "iam", "?"), ""])
    ages = {s.id: (s.backend, s.age) for s in parse_sessions(text)}
    assert ages == {"0x1a": ("iam", 5.0), "0x2b": ("node", 72.0), "0x3c": ("iam", 43200.0),
                    "0x4d": ("iam", 183600.0), "0x5e": ("<NONE>", 0.0)}


class _Front:
    """A front's runtime socket: its sessions, and the commands it was sent."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[str, str]] = {}
        self.sent: list[str] = []

    def command(self, text: str) -> str:
        self.sent.append(text)
        if text.startswith("shutdown session "):
            self.sessions.pop(text.split()[-1], None)
            return ""
        return "\n".join(_line(sid, be, age) for sid, (be, age) in self.sessions.items())


def test_iam_sessions_end_after_the_limit_on_the_engines_clock() -> None:
    now = [1000.0]
    front = _Front()
    reaper = IamSessionReaper(front.command, 12 * HOUR, clock=lambda: now[0])
    front.sessions = {"0xa": ("iam", "10s"), "0xb": ("node", "10s"), "0xc": ("iam", "11h59m")}
    assert reaper.sweep() == []
    now[0] += 61  # 0xc is now 12 hours old (its start was taken when first seen)
    front.sessions["0xc"] = ("iam", "12h0m")
    assert reaper.sweep() == ["0xc"] and "shutdown session 0xc" in front.sent
    now[0] += 12 * HOUR - 73  # 0xa: 2 s short of 12 hours since first seen (HAProxy's clock has not moved)
    assert reaper.sweep() == []
    now[0] += 2
    assert reaper.sweep() == ["0xa"]
    assert set(front.sessions) == {"0xb"}  # a password user's session (backend node) stays
    now[0] += 100 * HOUR
    assert reaper.sweep() == []


def test_a_reused_session_id_starts_again() -> None:
    now = [0.0]
    front = _Front()
    reaper = IamSessionReaper(front.command, 100.0, clock=lambda: now[0])
    front.sessions = {"0xa": ("iam", "50s")}
    reaper.sweep()
    now[0] += 40
    front.sessions = {"0xa": ("iam", "2s")}  # the old session ended, a new one got its id
    assert reaper.sweep() == []
    now[0] += 60
    assert reaper.sweep() == []  # 62 s old, not 150
    now[0] += 40
    assert reaper.sweep() == ["0xa"]
