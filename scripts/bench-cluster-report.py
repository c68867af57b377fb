#!/usr/bin/env python3
"""bench-cluster-report.py — scripts/bench-cluster.sh's result lines.

    scripts/bench-cluster-report.py RESULTS MACHINE PEERS

RESULTS holds chat-bench's fanout lines, each with bc_setup, bc_nodes,
bc_peer_nodes (the first bc_peer_nodes nodes have peers; the others are
bystanders) and bc_clustered added; --server-pid was given as: the nodes in
--url order, then the bystanders, then nats-server (clustered set-ups
only), then every PostgreSQL process.
Prints, one line each:

  cluster-bench setup=...      one chat-bench run: deliveries, latency
                               (and same-node / cross-node), each node's CPU
                               per delivery to its own peers, NATS's and
                               PostgreSQL's CPU per post
  cluster-bench summary ...    the NATS hop: one node with --cluster
                               against one without, at the same load
  cluster-bench marginal ...   per extra message between a set-up's two
                               rates (a node's idle CPU cancels): each
                               node's CPU against its receivers per message
                               (a bystander node, with no peer: 0)
  cluster-bench model ...      the fitted costs (below)
  cluster-bench predict ...    what they predict for N machines

The model: a clustered node pays c_m per message (every message reaches
every node once, and is serialized once there) plus c_d per delivery to
its own peers; nats-server pays n_0 per message plus n_1 per message per
node (the stream write, then one copy to each node's subscription);
PostgreSQL one log row per message, whatever the number of nodes.
"""
import sys


def f(r, k, d=0.0):
    try:
        return float(r[k])
    except (KeyError, ValueError):
        return d


def us(cpu, n):
    return f"{1e6 * cpu / n:.1f}" if n else "-"


def fit(p):
    """y = a + b x by least squares; None when x does not vary."""
    mx, my = sum(x for x, _ in p) / len(p), sum(y for _, y in p) / len(p)
    vx = sum((x - mx) ** 2 for x, _ in p)
    if vx <= 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in p) / vx
    return my - b * mx, b


def main():
    results, machine_txt, peers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = [dict(p.split("=", 1) for p in l.split() if "=" in p) for l in open(results)]
    machine = dict(l.rstrip("\n").split("=", 1) for l in open(machine_txt) if "=" in l)

    runs = {}  # (setup, rate) -> what one chat-bench line measured
    for r in rows:
        n, cl = int(r["bc_nodes"]), int(r["bc_clustered"])
        with_peers = int(r.get("bc_peer_nodes", n))
        each = [float(x) for x in r.get("server_cpu_each_s", r.get("server_cpu_s", "0")).split(",")]
        nodes_cpu, rest = each[:n], each[n:]
        run = dict(setup=r["bc_setup"], n=n, cl=cl, rate=f(r, "rate"), r=r, nodes_cpu=nodes_cpu,
                   nats=rest[0] if cl and rest else 0.0, pg=sum(rest[1:] if cl else rest),
                   sent=f(r, "sent"),
                   deliv=([int(x) for x in r["delivered_each"].split(",")]
                          if "delivered_each" in r else [int(r["delivered"])])
                   + [0] * (n - with_peers))
        runs[(run["setup"], run["rate"])] = run
        line = (f"cluster-bench setup={run['setup']} nodes={n} nodes_with_peers={with_peers}"
                f" peers={r['peers']} "
                f"senders={r['senders']} rate={r['rate']} sent={int(run['sent'])} "
                f"delivered={r['delivered']} lost={r['lost']} "
                f"delivered_per_s={r['delivered_per_s']} "
                f"p50_ms={f(r, 'lat_p50_ms'):.2f} p99_ms={f(r, 'lat_p99_ms'):.2f}")
        if "lat_same_n" in r:
            line += (f" same_node_p50_ms={f(r, 'lat_same_p50_ms'):.2f}"
                     f" same_node_p99_ms={f(r, 'lat_same_p99_ms'):.2f}"
                     f" cross_node_p50_ms={f(r, 'lat_cross_p50_ms'):.2f}"
                     f" cross_node_p99_ms={f(r, 'lat_cross_p99_ms'):.2f}")
        per_d = ",".join(us(c, d) for c, d in zip(nodes_cpu, run["deliv"]))
        line += (f" node_deliveries={','.join(map(str, run['deliv']))}"
                 f" node_cpu_s={','.join(f'{c:.2f}' for c in nodes_cpu)}"
                 f" node_us_per_delivery={per_d}"
                 f" node_us_per_message={','.join(us(c, run['sent']) for c in nodes_cpu)}"
                 f" nats_cpu_s={run['nats']:.2f} nats_us_per_post={us(run['nats'], run['sent'])}"
                 f" pg_cpu_s={run['pg']:.2f} pg_us_per_post={us(run['pg'], run['sent'])}"
                 f" all_servers_us_per_delivery={us(f(r, 'server_cpu_s'), f(r, 'delivered'))}"
                 f" wall_s={r.get('wall_s')} client_cpu_pct={r.get('client_cpu_pct')}"
                 f" others_cpu_pct={r.get('others_cpu_pct')}")
        print(line)

    # The NATS hop: one node with --cluster against one without, same load.
    for (setup, rate), b in sorted(runs.items()):
        a = runs.get(("1node", rate))
        if setup != "1node-nats" or a is None:
            continue
        ra, rb = a["r"], b["r"]
        ca = a["nodes_cpu"][0] / a["deliv"][0] if a["deliv"][0] else 0
        cb = b["nodes_cpu"][0] / b["deliv"][0] if b["deliv"][0] else 0
        print(f"cluster-bench summary rate={rate:g}"
              f" nats_hop_p50_ms={f(rb, 'lat_p50_ms') - f(ra, 'lat_p50_ms'):+.2f}"
              f" nats_hop_p99_ms={f(rb, 'lat_p99_ms') - f(ra, 'lat_p99_ms'):+.2f}"
              f" node_cpu_per_delivery_ratio={cb / ca if ca else float('nan'):.2f}"
              " (1node-nats against 1node)")

    # Marginal costs between a set-up's lowest and highest rate.
    pts, nat, pgs, base = [], [], [], None
    for setup in dict.fromkeys(s for s, _ in runs):
        rs = sorted((r for (s, _), r in runs.items() if s == setup), key=lambda r: r["rate"])
        if len(rs) < 2:
            continue
        lo, hi = rs[0], rs[-1]
        dm = hi["sent"] - lo["sent"]
        if dm <= 0:
            continue
        for k in range(hi["n"]):
            x = (hi["deliv"][k] - lo["deliv"][k]) / dm
            y = 1e6 * (hi["nodes_cpu"][k] - lo["nodes_cpu"][k]) / dm
            print(f"cluster-bench marginal setup={setup} node={k + 1}"
                  f" rates={lo['rate']:g},{hi['rate']:g} extra_messages={int(dm)}"
                  f" receivers_per_message={x:.1f} node_us_per_message={y:.1f}")
            if hi["cl"]:
                pts.append((x, y))
            else:
                base = (x, y)
        pgs.append(1e6 * (hi["pg"] - lo["pg"]) / dm)
        if hi["cl"]:
            nat.append((hi["n"], 1e6 * (hi["nats"] - lo["nats"]) / dm))

    node_fit = fit(pts) if len(pts) >= 2 else None
    nats_fit = fit(nat) if len(nat) >= 2 else None
    pg_us = sum(pgs) / len(pgs) if pgs else None
    if node_fit:
        cm, cd = node_fit
        print(f"cluster-bench model node_us_per_message={cm:.1f} node_us_per_delivery={cd:.1f}"
              f" (a clustered node's CPU per message = the first + its receivers x the second;"
              f" fitted over {len(pts)} nodes)"
              + (f" baseline_us_per_message={base[1]:.1f} at {base[0]:.0f} receivers"
                 if base else ""))
    if nats_fit:
        print(f"cluster-bench model nats_us_per_message={nats_fit[0]:.1f}"
              f" nats_us_per_message_per_node={nats_fit[1]:.1f}")
    if pg_us is not None:
        print(f"cluster-bench model pg_us_per_message={pg_us:.1f}")
    # For N machines (each node, NATS and PostgreSQL a core of its own, run
    # to 100 %): the messages/s one room of P peers can take, and its
    # deliveries/s (P - 1 each), and which part runs out first.
    if node_fit and nats_fit and pg_us and pg_us > 0:
        cm, cd = node_fit
        for p in sorted({peers, 1000}):
            for nn in (1, 2, 3, 4, 8, 16):
                node = cm + cd * (p - 1) / nn
                nats = nats_fit[0] + nats_fit[1] * nn
                lims = [(1e6 / node, "node")] if node > 0 else []
                lims += [(1e6 / nats, "nats")] if nats > 0 else []
                lims += [(1e6 / pg_us, "postgresql")]
                m, what = min(lims)
                print(f"cluster-bench predict peers={p} nodes={nn} messages_per_s={m:.0f}"
                      f" deliveries_per_s={m * (p - 1):.0f} limit={what}")
    print(f"cluster-bench machine cores={machine.get('cores')}"
          f" load_at_start=\"{machine.get('load_at_start')}\""
          f" load_at_end=\"{machine.get('load_at_end')}\" run_seconds={machine.get('run_seconds')}"
          f" waited_for_quiet_s={machine.get('waited_for_quiet_s')}")


if __name__ == "__main__":
    main()
