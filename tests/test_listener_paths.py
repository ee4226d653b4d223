"""The listener reads the common MAIL FROM / RCPT TO path itself (a regular expression instead of
the email package's parser): for every argument it must read the same address and parameters
as aiosmtpd, or refuse the same ones."""

from __future__ import annotations

import random

from aiosmtpd.smtp import SMTP

from outbound.listener import _SIMPLE_PATH, SubmissionSMTP

PIECES = [
    "<", ">", "a", "B", "0", ".", "..", "@", "-", "+", " ", "  ", "\t", "x.y", "SIZE=10", '"',
    "[1.2.3.4]", "(c)", ",", ":", "é", "=", "\\", "\r\n", "~", "#", "\r", "\n", ")",
]  # fmt: skip


def read(server: SMTP, arg: str) -> object:
    try:
        return server._getaddr(arg)
    except Exception as exc:  # noqa: BLE001 - aiosmtpd's parser raises on some garbage
        return type(exc).__name__


def arguments(count: int) -> list[str]:
    chance = random.Random(13)
    generated = []
    for _ in range(count):
        pieces = chance.choices(PIECES, k=chance.randint(1, 9))
        arg = "".join(pieces)
        if chance.random() < 0.5:
            local = chance.choice(["a", "a.b", "x+y", "a~#b.c", "ann"])
            domain = chance.choice(["b", "b.c", "b-c.d", "-b", "example.com"])
            arg = f"<{local}@{domain}>" + "".join(pieces[: chance.randint(0, 4)])
        generated.append(arg)
    return generated


def test_paths_are_read_as_aiosmtpd_reads_them():
    theirs, ours = SMTP.__new__(SMTP), SubmissionSMTP.__new__(SubmissionSMTP)
    theirs.local_part_limit = ours.local_part_limit = 0
    args = arguments(20000)
    assert sum(1 for arg in args if _SIMPLE_PATH.fullmatch(arg)) > 2000  # the quick way is used
    assert [read(ours, arg) for arg in args] == [read(theirs, arg) for arg in args]


def test_a_local_part_over_the_limit_is_refused_either_way():
    theirs, ours = SMTP.__new__(SMTP), SubmissionSMTP.__new__(SubmissionSMTP)
    theirs.local_part_limit = ours.local_part_limit = 4
    for arg in ["<abcd@example.com>", "<abcde@example.com> SIZE=10"]:
        assert read(ours, arg) == read(theirs, arg)
    assert read(ours, "<abcde@example.com>") == (None, None)
