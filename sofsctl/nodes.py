"""sofsctl commands of the networked RING: ``cluster create``, ``node ...`` and ``disk ...``
(``disk add`` of an embedded RING: :mod:`sofsctl.diskadd`).

Thin: each command calls :mod:`chunkstore.ring.mapadmin` and prints. Map changes take the newest
map among the local copy and the reachable nodes, add one epoch, save and publish it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.placement.ring import DEFAULT_VNODES
from chunkstore.protection.policy import parse_policy
from chunkstore.ring import mapadmin
from chunkstore.ring.open import is_networked
from sofs.volume import list_volume_names, load_volume

from .common import Failure, FiniteFloat, fail, pass_home, table
from .diskadd import EMBEDDED_FORM, add_embedded
from .statusfacts import node_facts


def _widest_policy(home: Path) -> int:
    """The most pieces any volume of this data directory puts on distinct disks."""
    widths = [1]
    for name in list_volume_names(home):
        try:
            cfg = load_volume(home, name)
        except Exception:  # an unreadable volume config is reported by other commands
            continue
        widths += [parse_policy(cfg.small_policy).width, parse_policy(cfg.large_policy).width]
    return max(widths)


def _change(home: Path, what: str, change) -> ClusterMap:
    try:
        new, failed = mapadmin.change_map(home, change, min_placing=_widest_policy(home))
    except (cerr.ChunkStoreError, KeyError, ValueError) as e:
        raise fail(e) from None
    click.echo(f"cluster map epoch {new.epoch}: {what}")
    for node_id, why in sorted(failed.items()):
        click.echo(f"warning: node {node_id} has not taken the new map yet ({why}); it gets "
                   "it from the next client heartbeat once it answers", err=True)
    return new


@click.command("create")
@click.option("--vnodes", type=click.IntRange(1, 256), default=DEFAULT_VNODES, show_default=True,
              help="Virtual nodes per disk on the ring.")
@click.option("--etcd", "etcd", metavar="URL[,URL...]", default=None,
              help="Agree through this etcd (its client URLs; HOST:PORT means https): the map "
                   "lives there and changes only by compare-and-swap. The data dir's pki/ "
                   "must hold the cluster CA and etcd-client.crt/.key (sofsctl etcd init).")
@pass_home
def cluster_create(home: Path, vnodes: int, etcd: str | None) -> None:
    """Create a networked cluster: an empty map and a new cluster secret in the data dir.

    \b
    Then, on each storage server:  sofsctl node init NODE_DIR --node-id n1 --listen IP:7700
                                   sofs-node --config NODE_DIR/node.json
    and here:                      sofsctl node add n1 IP:7700 --disks 2
    """
    try:
        cmap = mapadmin.create_cluster(home, vnodes, etcd)
    except (cerr.ChunkStoreError, OSError) as e:
        raise fail(e) from None
    click.echo(f"networked cluster {cmap.cluster_id} created in {home} (map epoch {cmap.epoch})")
    if etcd is not None:
        click.echo(f"its map is kept in etcd ({etcd}); node init gives each node the etcd "
                   "endpoints and a certificate of its own")
    click.echo(f"copy {home / mapadmin.SECRET_FILE} to every storage server and client "
               "(mode 0600): it proves membership")


@click.group()
def node() -> None:
    """Storage nodes of a networked RING: prepare, add, drain, remove, list."""


@node.command("init")
@click.argument("node_dir", type=click.Path(path_type=Path))
@click.option("--node-id", required=True, help="Unique node name (letters, digits, . _ : -).")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Address the node serves on.")
@click.option("--disks", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Disk directories to create (NODE_DIR/disks/<node>.d0 ...).")
@click.option("--disk-root", type=click.Path(path_type=Path), default=None,
              help="Create the disk directories here instead (one per mounted disk).")
@pass_home
def node_init(home: Path, node_dir: Path, node_id: str, listen: str, disks: int,
              disk_root: Path | None) -> None:
    """Prepare NODE_DIR for a storage node of this cluster (config, secret, disks)."""
    try:
        path = mapadmin.init_node(node_dir, home, node_id, listen, disks,
                                  disk_root=str(disk_root) if disk_root else None)
    except (cerr.ChunkStoreError, OSError, ValueError) as e:
        raise fail(e) from None
    click.echo(f"node {node_id} prepared: {path}")
    click.echo(f"start it with: sofs-node --config {path}")
    click.echo(f"then add it:   sofsctl --data-dir {home} node add {node_id} {listen} "
               f"--disks {disks}")


@node.command("add")
@click.argument("node_id")
@click.argument("address", metavar="HOST:PORT")
@click.option("--site", default="site0", show_default=True, help="Failure domain above hosts.")
@click.option("--disks", type=click.IntRange(1, 64), default=1, show_default=True,
              help="How many disks the node serves (<node>.d0 ...).")
@click.option("--weight", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="Relative capacity of each disk.")
@pass_home
def node_add(home: Path, node_id: str, address: str, site: str, disks: int,
             weight: float) -> None:
    """Add a node and its disks to the map: data moves to it (only the arcs it takes)."""
    def change(cmap: ClusterMap) -> ClusterMap:
        cmap = cmap.add_node(node_id, address, site)
        for disk_id in mapadmin.node_disk_ids(node_id, disks):
            cmap = cmap.add_disk(disk_id, node_id, weight)
        return cmap

    _change(home, f"node {node_id} ({address}, site {site}) added with {disks} disks", change)
    click.echo("mounted clients pick the new map up within seconds and rebalance in the "
               "background (sofsctl status shows the progress)")


@node.command("drain")
@click.argument("node_id")
@pass_home
def node_drain(home: Path, node_id: str) -> None:
    """Move every piece off NODE_ID (it stays readable meanwhile); then remove it."""
    _change(home, f"node {node_id} draining",
            lambda cmap: cmap.set_node_state(node_id, "draining"))
    click.echo(f"when 'sofsctl node list' shows 0 pieces on it: sofsctl node remove {node_id}")


@node.command("up")
@click.argument("node_id")
@pass_home
def node_up(home: Path, node_id: str) -> None:
    """Put a drained, down or out node back into service."""
    _change(home, f"node {node_id} up", lambda cmap: cmap.set_node_state(node_id, "up"))


@node.command("remove")
@click.argument("node_id")
@click.option("--force", is_flag=True,
              help="Remove a node that still holds pieces or cannot be asked (a dead server "
                   "whose data was rebuilt elsewhere).")
@pass_home
def node_remove(home: Path, node_id: str, force: bool) -> None:
    """Remove a drained (or down) node and its disks from the map."""
    if not force:
        try:
            counts = mapadmin.node_piece_counts(home, node_id)
        except (cerr.ChunkStoreError, KeyError) as e:
            raise Failure(f"cannot ask node {node_id} how much it holds ({e}); if it is dead "
                          "and its data was rebuilt, use --force") from None
        left = sum(counts.values())
        if left:
            raise Failure(f"node {node_id} still holds {left} pieces: drain it first "
                          f"(sofsctl node drain {node_id}) and wait, or use --force")
    _change(home, f"node {node_id} removed", lambda cmap: cmap.remove_node(node_id))


@node.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def node_list(home: Path, as_json: bool) -> None:
    """Nodes and disks of the map, whether they answer, their map epochs and pieces held."""
    if not is_networked(home):
        raise Failure(f"{home} holds an embedded ring (disk directories on this machine, no "
                      "storage nodes): see its disks with sofsctl status or sofsctl df")
    if as_json:
        click.echo(json.dumps(node_facts(home), indent=1))
        return
    print_nodes(home)


def print_nodes(home: Path) -> None:
    try:
        cmap = mapadmin.newest_map(home)
        reach = mapadmin.node_reachability(home)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    click.echo(f"cluster {cmap.cluster_id}, map epoch {cmap.epoch}")
    rows: list[tuple[object, ...]] = [("NODE", "ADDRESS", "SITE", "STATE", "ANSWERS", "EPOCH", "PIECES", "DISKS")]
    for n in cmap.nodes:
        ok, epoch = reach.get(n.id, (False, "?"))
        pieces = "-"
        if ok:
            try:
                pieces = str(sum(mapadmin.node_piece_counts(home, n.id).values()))
            except cerr.ChunkStoreError:
                pass
        disks = [d.id + ("" if d.state == "up" else f"({d.state})") for d in cmap.disks
                 if d.node == n.id]
        rows.append((n.id, n.address, n.site, n.state, "yes" if ok else "NO",
                     epoch if ok else "-", pieces, ",".join(disks)))
    table(rows)


@click.group()
def disk() -> None:
    """Single disks: add one (embedded or networked RING), take a failed one out (networked)."""


NETWORKED_FORM = "sofsctl disk add ID --node NODE [--weight W]"


@disk.command("add")
@click.argument("disk_id", required=False)
@click.option("--node", "node_id", default=None,
              help="Networked ring (required there): the node serving the disk.")
@click.option("--path", type=click.Path(path_type=Path), default=None,
              help="Embedded ring: the disk's directory, empty or missing (its parent must "
                   "exist), such as a drive's mount point [default: DATA_DIR/disks/ID].")
@click.option("--weight", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="Relative capacity (an embedded ring's disk: > 0).")
@click.option("--no-rebalance", is_flag=True,
              help="Embedded ring: only add the disk; sofsctl repair moves the data later.")
@pass_home
def disk_add(home: Path, disk_id: str | None, node_id: str | None, path: Path | None,
             weight: float, no_rebalance: bool) -> None:
    """Add a disk. Embedded ring: a new disk directory [default: the next id, dN], then the
    data whose owners changed moves to it. Networked ring: a disk a node already serves,
    added to the map (data moves in the background)."""
    if is_networked(home):
        extra = [o for o, given in (("--path", path is not None),
                                    ("--no-rebalance", no_rebalance)) if given]
        if extra:
            raise Failure(f"{' and '.join(extra)}: for an embedded ring; this data directory "
                          f"holds a networked one: {NETWORKED_FORM}")
        if disk_id is None or node_id is None:
            raise Failure(f"on a networked ring name the disk and its node: {NETWORKED_FORM} "
                          "(the node must serve the disk already)")
        _change(home, f"disk {disk_id} on node {node_id} added",
                lambda cmap: cmap.add_disk(disk_id, node_id, weight))
        return
    if node_id is not None:
        raise Failure("--node: for a networked ring; this data directory holds an embedded "
                      f"ring (its disks are directories here): {EMBEDDED_FORM}")
    add_embedded(home, disk_id, path, weight, rebalance_now=not no_rebalance)


@disk.command("out")
@click.argument("disk_id")
@pass_home
def disk_out(home: Path, disk_id: str) -> None:
    """Take a failed disk out: its data is rebuilt on the others."""
    _change(home, f"disk {disk_id} out", lambda cmap: cmap.set_disk_state(disk_id, "out"))


def print_cluster_view(info: dict) -> None:
    """The networked part of ``sofsctl status``: nodes, and the rebuild as the active healer
    (one of the mounts of this data directory) sees them (``info``: its ``cluster`` op)."""
    click.echo(f"map epoch {info['epoch']} (as the mount process sees it)")
    rows = [("NODE", "ADDRESS", "SITE", "STATE", "REACHABLE")]
    now = time.time()
    for n in info["nodes"]:
        since = n["unreachable_since"]
        reach = "yes" if since is None else f"NO for {now - since:.0f} s"
        rows.append((n["id"], n["address"], n["site"], n["state"], reach))
    table(rows)
    if info["disks_unavailable"]:
        click.echo(f"disks unavailable: {', '.join(info['disks_unavailable'])}")
    if info.get("etcd_unreachable"):
        click.echo(f"the healer cannot reach etcd ({info['etcd_unreachable']}): no node is "
                   "marked down or up and no rebuild runs until it answers")
    if info.get("healer_leader") and info["rebuild"]["state"] == "standby":
        click.echo(f"healer: standing by; the cluster's active healer is "
                   f"{info['healer_leader']}")
    rb = info["rebuild"]
    if rb["state"] == "rebuilding":
        eta = f", ETA {rb['eta_s']:.0f} s" if rb["eta_s"] is not None else ""
        click.echo(f"rebuild: {rb['chunks_done']}/{rb['chunks_total']} chunks checked, "
                   f"{rb['rate_chunks_s']:.0f} chunks/s{eta}")
    elif rb["last_report"]:
        r = rb["last_report"]
        click.echo(f"last rebuild (map epoch {rb['epoch']}): {r['pieces_rebuilt']} pieces "
                   f"rebuilt ({r['bytes_rebuilt']} bytes), {r['pieces_removed']} removed, "
                   f"{r['unrecoverable']} unrecoverable, in {r['seconds']:.1f} s")
