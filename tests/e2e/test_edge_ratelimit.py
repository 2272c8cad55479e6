"""A login flood from one client gets 429s while another client is served."""
import threading

from edge_support import Edge, domain, group_hosts, lab_exec, vip
from test_app_support import READ_PATH, pebble_root

FLOOD = 40


def test_login_flood_gets_429_while_others_are_served(lab_inventory):
    edge = Edge.from_inventory(lab_inventory)
    # The flood comes from another lab address (the lab services host).
    flooder = group_hosts(lab_inventory, "labsvc")[0]
    root = pebble_root(lab_inventory)
    lab_exec(lab_inventory, flooder, "sh", "-c", f"cat > /tmp/edge-e2e-root.pem <<'EOF'\n{root}\nEOF")
    statuses = []

    def others():
        for _ in range(20):
            statuses.append(edge.get(READ_PATH)[0])

    t = threading.Thread(target=others)
    t.start()
    script = (
        f"for i in $(seq {FLOOD}); do curl -s -o /dev/null -w '%{{http_code}} ' "
        f"--cacert /tmp/edge-e2e-root.pem --resolve {domain(lab_inventory)}:443:{vip(lab_inventory)} "
        f"-H 'Content-Type: application/json' -d '{{\"email\":\"flood@example.invalid\",\"password\":\"wrong-password\"}}' "
        f"https://{domain(lab_inventory)}/api/v1/auth/login; done"
    )
    flood = lab_exec(lab_inventory, flooder, "sh", "-c", script, timeout=120).stdout.split()
    t.join(60)
    print("flood:", flood, "others:", statuses)
    assert flood.count("429") >= FLOOD // 2, flood
    assert "429" not in flood[:5], flood
    assert statuses and all(s == 200 for s in statuses), statuses
