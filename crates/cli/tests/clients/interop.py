"""A python-osc client (a client we did not write) driving Chronus over UDP and TCP.

Usage: interop.py HOST PORT udp|tcp1.0|tcp1.1 [push]

Sets parameters (one by a pattern), reads them back with /get, asks /status and /metrics,
and checks that a bad value gets /fail. Prints one line per step; exits 1 at the first
step that does not hold, saying why. With `push`: subscribes to the `failover` topic
(/notify), prints "subscribed", and waits up to 30 s for a /chronus/failover push (the
test kills the active worker meanwhile).
"""

import sys
import time

from pythonosc import tcp_client, udp_client


def fail(step, why):
    print(f"FAILED {step}: {why}", flush=True)
    sys.exit(1)


class Client:
    """One transport; `ask` sends a message and collects replies until /synced."""

    def __init__(self, host, port, transport):
        if transport == "udp":
            self.client = udp_client.SimpleUDPClient(host, port)
        else:
            mode = transport.removeprefix("tcp")
            self.client = tcp_client.SimpleTCPClient(host, port, mode=mode, timeout=5)
        self.sync_id = 0

    def ask(self, address, args):
        """Sends `address args`, then /sync; returns the replies before /synced."""
        self.client.send_message(address, args)
        self.sync_id += 1
        self.client.send_message("/sync", self.sync_id)
        return self.wait_for("/synced", [self.sync_id], 10)[:-1]

    def wait_for(self, address, params, seconds):
        """The messages received before `address params`, waiting at most `seconds`."""
        deadline = time.monotonic() + seconds
        replies = []
        while time.monotonic() < deadline:
            try:
                for message in self.client.get_messages(1):
                    if message.address == address and (params is None or message.params == params):
                        replies.append(message)
                        return replies
                    replies.append(message)
            except (TimeoutError, OSError):
                pass
        fail(address, f"no {address} {params} within {seconds} s; got {replies}")


def push(client):
    replies = client.ask("/notify", [1, "failover"])
    if not any(r.address == "/done" and r.params == ["/notify"] for r in replies):
        fail("subscribe", replies)
    print("subscribed", flush=True)
    pushed = client.wait_for("/chronus/failover", None, 30)[-1]
    slot, frame, cause = pushed.params
    print(f"ok push /chronus/failover slot {slot} frame {frame} cause {cause}", flush=True)


def main():
    host, port, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = Client(host, port, transport)
    if sys.argv[4:] == ["push"]:
        return push(client)

    if replies := client.ask("/mod/sine/freq", 330.0):
        fail("set", f"unexpected replies {replies}")
    replies = client.ask("/get", "/mod/sine/freq")
    if [(r.address, r.params) for r in replies] != [("/get.reply", ["/mod/sine/freq", 330.0])]:
        fail("get", replies)
    print("ok set and get", flush=True)

    client.ask("/mod/*/gain", 0.25)
    replies = client.ask("/get", "/mod/*/gain")
    got = sorted((r.params[0], r.params[1]) for r in replies if r.address == "/get.reply")
    want = [
        ("/mod/filter/gain", 0.25),
        ("/mod/gain/gain", 0.25),
        ("/mod/keys.osc/gain", 0.25),
        ("/mod/keys.vca/gain", 0.25),
        ("/mod/sine/gain", 0.25),
    ]
    if got != want:
        fail("pattern", f"{got} != {want}")
    print("ok pattern", flush=True)

    replies = client.ask("/status", [])
    status = [r for r in replies if r.address == "/status.reply"]
    if len(status) != 1 or len(status[0].params) != 9 or status[0].params[7] != 48000.0:
        fail("status", replies)
    print(f"ok status {status[0].params}", flush=True)

    replies = client.ask("/metrics", [])
    metrics = [r for r in replies if r.address == "/metrics.reply"]
    if len(metrics) != 1:
        fail("metrics", replies)
    names = metrics[0].params[0::2]
    if "blocks_played" not in names or "underruns" not in names:
        fail("metrics", f"names {names[:10]}…")
    print(f"ok metrics ({len(names)} metrics)", flush=True)

    replies = client.ask("/mod/sine/freq", 30000.0)
    if len(replies) != 1 or replies[0].address != "/fail" or "out of range" not in replies[0].params[1]:
        fail("refusal", replies)
    print("ok refusal", flush=True)


if __name__ == "__main__":
    main()
