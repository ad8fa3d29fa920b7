"""A sequencer-like OSC client for the timetag test: plays `count` notes `spacing` seconds
apart, each as two timetagged bundles (gate on, gate off `length` later), each bundle sent
`ahead` seconds before its time, as a sequencer sends them; with python-osc, a client
people use.

    timed_bundles.py HOST PORT GATE_ADDRESS [count] [spacing] [ahead] [length]

Prints the timetags it sent (seconds since 1970), one per line.
"""
import socket
import sys
import time

from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder


def bundle(at, address, value):
    builder = OscBundleBuilder(at)
    message = OscMessageBuilder(address=address)
    message.add_arg(value)
    builder.add_content(message.build())
    return builder.build().dgram


def main():
    host, port, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    spacing = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    ahead = float(sys.argv[6]) if len(sys.argv) > 6 else 0.06
    length = float(sys.argv[7]) if len(sys.argv) > 7 else 0.05
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The first note far enough ahead that the loop below is never late for it.
    first = time.time() + ahead + 0.2
    events = []
    for i in range(count):
        events.append((first + i * spacing, 1))
        events.append((first + i * spacing + length, 0))
    for at, gate in events:
        send_at = at - ahead
        wait = send_at - time.time()
        if wait > 0:
            time.sleep(wait)
        sock.sendto(bundle(at, address, gate), (host, port))
        if gate:
            print(f"{at:.6f}", flush=True)


if __name__ == "__main__":
    main()
