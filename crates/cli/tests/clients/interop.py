"""A python-osc client (a client we did not write) driving Chronus over UDP and TCP.

Usage: interop.py HOST PORT udp|tcp1.0|tcp1.1

Sets parameters (one by a pattern), reads them back with /get, asks /status and /metrics,
and checks that a bad value gets /fail. Prints one line per step; exits 1 at the first
step that does not hold, saying why.
"""

import sys

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
        replies = []
        for _ in range(100):
            for message in self.client.get_messages(5):
                if message.address == "/synced" and message.params == [self.sync_id]:
                    return replies
                replies.append(message)
        fail(address, f"no /synced {self.sync_id}; got {replies}")


def main():
    host, port, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = Client(host, port, transport)

    if replies := client.ask("/mod/sine/freq", 330.0):
        fail("set", f"unexpected replies {replies}")
    replies = client.ask("/get", "/mod/sine/freq")
    if [(r.address, r.params) for r in replies] != [("/get.reply", ["/mod/sine/freq", 330.0])]:
        fail("get", replies)
    print("ok set and get", flush=True)

    client.ask("/mod/*/gain", 0.25)
    replies = client.ask("/get", "/mod/*/gain")
    got = sorted((r.params[0], r.params[1]) for r in replies if r.address == "/get.reply")
    want = [("/mod/filter/gain", 0.25), ("/mod/gain/gain", 0.25), ("/mod/sine/gain", 0.25)]
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
