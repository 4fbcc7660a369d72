#!/usr/bin/env python3
"""The arguments of the app's own purchase.lua call, for redis-benchmark (scripts/bench-flash.sh).

Reads a `redis-cli MONITOR` log taken while the app served one purchase, finds the EVALSHA (else
EVAL) call of that purchase (the one naming its ticket id), and prints its arguments
NUL-separated: the command, the SHA (or script), numkeys, the keys and the arguments, exactly as
the component sent them, except that
  * the purchase's own values (customer, Idempotency-Key, ticket id, reservation id, message id)
    become redis-benchmark's __rand_int__ placeholders, so every call is a new buyer's first
    purchase and takes a unit, as in the HTTP run; two placeholders each (24 random digits),
    since one (12 digits) repeats a message id about 20 times in 200,000 calls, and
    purchase.lua takes nothing when publish skips a message id it has already seen;
  * the `flash` topic's stream, doorbell and pending mark get a `bench:raw:` prefix, so the
    app's order receiver never sees these purchases (same work in Redis: XADD, SET NX, PUBLISH).
usage: flash_raw_args.py MONITOR_LOG TICKET_ID CUSTOMER IDEMPOTENCY_KEY
"""
import re
import sys

ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def unrepr(s):
    """Undoes Redis' sdscatrepr quoting of one MONITOR argument."""
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1] == "x":
            out.append(int(s[i + 2 : i + 4], 16))
            i += 4
        elif s[i] == "\\":
            out += ESCAPES[s[i + 1]]
            i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def captured(log, ticket):
    token = re.compile(r'"((?:[^"\\]|\\.)*)"')
    calls = []
    for line in open(log, encoding="utf-8", errors="replace"):
        if "] " not in line:
            continue
        args = [unrepr(t) for t in token.findall(line.split("] ", 1)[1])]
        if args and args[0].upper() in (b"EVALSHA", b"EVAL") and any(ticket in a for a in args):
            calls.append(args)
    calls.sort(key=lambda a: a[0].upper() != b"EVALSHA")
    if not calls:
        sys.exit(f"flash_raw_args.py: no EVALSHA/EVAL naming {ticket.decode()} in {log}")
    return calls[0]


def main():
    log, ticket, customer, key = sys.argv[1], *(a.encode() for a in sys.argv[2:5])
    args = captured(log, ticket)
    message = next((a for a in args if re.fullmatch(rb"msg_[0-9A-Za-z]+", a)), None)
    swaps = [
        (ticket, b"tkt_raw__rand_int____rand_int__"),
        (b"flash_" + ticket[4:], b"flash_raw__rand_int____rand_int__"),
        (b"doorbell:pending:flash", b"bench:raw:doorbell:pending:flash"),
        (b"doorbell:flash", b"bench:raw:doorbell:flash"),
        (b"events:flash", b"bench:raw:events:flash"),
    ]
    if message:
        swaps.append((message, b"msg_raw__rand_int____rand_int__"))
    out = []
    for n, a in enumerate(args):
        if n >= 3 and a == customer:
            a = b"raw-buyer-__rand_int____rand_int__"
        elif n >= 3 and a == key:
            a = b"raw-key-__rand_int____rand_int__"
        else:
            for old, new in swaps:
                a = a.replace(old, new)
        out.append(a)
    sys.stdout.buffer.write(b"\0".join(out) + b"\0")


main()
