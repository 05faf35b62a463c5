# libtorrent (python3-libtorrent) as a BitTorrent client behind the gateway, run in the LAN client's
# namespace: `libtorrent-client.py LISTEN_ADDRESS PORT LIFETIME_SECONDS`. UPnP is off and NAT-PMP on,
# so libtorrent maps its listen port (TCP, and UDP for uTP) with PCP or NAT-PMP. Prints one JSON
# line per port-mapping alert; on the stdin line `stop` it destroys its session (which deletes its
# mappings) and prints {"event": "stopped"}. It exits after LIFETIME_SECONDS in any case.
import json
import select
import sys
import time

import libtorrent as lt

address, port, lifetime = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + lifetime


def say(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def protocol_name(value):
    # portmap_alert.map_protocol: libtorrent's portmap_protocol enum (none, tcp, udp).
    return str(value).rsplit(".", 1)[-1].upper()


session = lt.session(
    {
        "listen_interfaces": f"{address}:{port}",
        "enable_upnp": False,
        "enable_natpmp": True,
        "enable_lsd": False,
        "enable_dht": False,
        "alert_mask": lt.alert_category.port_mapping | lt.alert_category.port_mapping_log | lt.alert_category.error,
    }
)


def drain():
    for alert in session.pop_alerts():
        name = type(alert).__name__
        if name == "portmap_alert":
            say(
                {
                    "event": "mapped",
                    "protocol": protocol_name(alert.map_protocol),
                    "externalPort": alert.external_port,
                    "transport": str(alert.map_transport),
                    "message": alert.message(),
                }
            )
        elif name == "portmap_error_alert":
            say({"event": "mapping-error", "message": alert.message()})
        elif name == "portmap_log_alert":
            say({"event": "log", "message": alert.message()})
        else:
            say({"event": "alert", "type": name, "message": alert.message()})


say({"event": "started", "version": lt.__version__})
while time.monotonic() < deadline:
    session.wait_for_alert(100)
    drain()
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    if ready:
        line = sys.stdin.readline()
        if line == "" or line.strip() == "stop":
            # Destroying the session closes its NAT-PMP/PCP client, which deletes the mappings it holds.
            drain()
            del session
            say({"event": "stopped"})
            sys.exit(0)
sys.exit(3)
