"""Prometheus metrics for a node and for a long-running proposer (prometheus_client).

A node serves its metrics over HTTP (``[metrics] port``, ``zpaxos node --metrics-port``)
from prometheus_client's server thread, while its loop stays single-threaded. The loop
never calls prometheus_client per message: what it counts anyway, in plain ints and
dicts (the host's messages by type and outcome, the wire's malformed frames by reason,
admission's drops, the keys it created), is read by :class:`NodeCollector` when
Prometheus scrapes, in the server's thread. Reading an int, a ``len()`` or a
``dict.copy()`` is atomic under the GIL, so no lock is taken on the loop's side. The loop
only observes three histograms: a pass, a commit's fdatasync, a fold (each at most once
per pass). Gauges are computed at scrape time too, never from the store (its SQLite
connection belongs to the loop's thread).

A proposer (:class:`zpaxos.runtime.client.Client`, ``zpaxos bench --metrics-port``) takes
a :class:`ClientMetrics`: its proposals by result, failures by reason, rounds and latency.

Names follow Prometheus's conventions (``zpaxos_`` prefix, ``_total`` on counters, base
units in ``_seconds``/``_bytes``); tests/test_metrics.py checks them on a real scrape, with
``promtool check metrics`` where it is installed.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zpaxos.hosts.admission import DROP_REASONS
from zpaxos.protocol.core import Outcome
from zpaxos.protocol.events import (
    DEADLINE,
    MAX_ROUNDS,
    REJECTED,
    TIMEOUT,
    Event,
    GaveUp,
    Retry,
)
from zpaxos.protocol.registry import BY_CLASS, MALFORMED_REASONS
from zpaxos.protocol.regmessages import REGISTER_PREFIX
from zpaxos.runtime.curve import REFUSAL_REASONS
from zpaxos.runtime.sockets import BindError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from wsgiref.simple_server import WSGIServer

    from zpaxos.hosts.acceptor_host import AcceptorHost
    from zpaxos.hosts.admission import Admission
    from zpaxos.protocol.core import KeyState
    from zpaxos.runtime.config import NodeConfig
    from zpaxos.runtime.sockets import Sockets
    from zpaxos.runtime.storage import MemoryStore, SqliteStore
    from zpaxos.runtime.valuefiles import ValueFiles


class Node(Protocol):
    """What the metrics read of a node (zpaxos.runtime.node.Node), named here so that
    the node can import this module (only when metrics are on) and not the other way."""

    cfg: NodeConfig
    host: AcceptorHost
    admission: Admission
    store: SqliteStore | MemoryStore
    values: ValueFiles
    sockets: Sockets | None
    keys_known: int
    learned: int
    longest_pass_s: float
    peer_names: dict[int, str]

    @property
    def pending_decisions(self) -> Mapping[str, KeyState]: ...

# Buckets: a commit's fdatasync and a pass run from tens of microseconds (tmpfs, a page
# cache that lies) to seconds (a disk in trouble); a fold writes up to FOLD_KEYS rows.
DURATION_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                      0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FOLD_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0)
PROPOSAL_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                      1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROUNDS_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128)

# A proposal's result (zpaxos_client_proposals_total): Outcome.how, or failed; and why a
# proposal failed (GaveUp's cause, or the exception that ended every one in flight).
FAILED, REFUSED, INTERRUPTED = "failed", "refused", "interrupted"
RESULTS = ("proposed", "adopted", "already", FAILED)
FAILURE_REASONS = (DEADLINE, MAX_ROUNDS, REFUSED, INTERRUPTED)
RETRY_CAUSES = (REJECTED, TIMEOUT)


def _type_label(t: type) -> str:
    """A message type as a label: its wire name in lower case ("prepare")."""
    return BY_CLASS[t].type_name.lower()


class Serving:
    """prometheus_client's HTTP server for one registry, in its daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        where = f"http://[{host}]:{port}/metrics" if ":" in host else \
            f"http://{host}:{port}/metrics"
        try:
            self.httpd: WSGIServer
            self.httpd, self.thread = start_http_server(port, host, registry)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise BindError(f"cannot serve metrics on {where}: address already in use "
                                f"(give another [metrics] port or --metrics-port)",
                                node_address=False) from None
            raise BindError(f"cannot serve metrics on {where}: {e.strerror or e} ([metrics] "
                            f"host)", node_address=False) from None
        self.url = where
        self.port = self.httpd.server_address[1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class NodeMetrics:
    """One node's registry: the three histograms the loop observes, the process's own
    metrics (prometheus_client's ProcessCollector: RSS, CPU, open fds) and the
    :class:`NodeCollector` that reads the rest at scrape time."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.pass_seconds = Histogram(
            "zpaxos_node_pass_duration_seconds",
            "One pass of the loop: hand the batch to the host, commit (fdatasync), send.",
            buckets=DURATION_BUCKETS_S, registry=r)
        self.fsync_seconds = Histogram(
            "zpaxos_node_fsync_duration_seconds",
            "The fdatasync of one commit's journal record (replies wait for it).",
            buckets=DURATION_BUCKETS_S, registry=r)
        self.fold_seconds = Histogram(
            "zpaxos_node_fold_duration_seconds",
            "Folding the journal into state.db: one SQLite transaction, written a slice "
            "per loop pass after the replies (the sum of its slices).",
            buckets=FOLD_BUCKETS_S, registry=r)
        ProcessCollector(registry=r)
        r.register(NodeCollector(node))
        node.store.timed(self.fsync_seconds.observe, self.fold_seconds.observe)
        self.serving: Serving | None = None

    def serve(self, host: str, port: int) -> None:
        self.serving = Serving(self.registry, host, port)

    def close(self) -> None:
        if self.serving is not None:
            self.serving.close()
            self.serving = None


def _counter(name: str, doc: str, label: str, known: Iterable[str],
             counts: dict[str, int]) -> CounterMetricFamily:
    """A counter by ``label``, every known value present (at 0 until it happens), so a
    rate() or an alert on it has a series to look at from the first scrape."""
    fam = CounterMetricFamily(name, doc, labels=[label])
    for value in dict.fromkeys([*known, *counts]):
        fam.add_metric([value], counts.get(value, 0))
    return fam


class NodeCollector(Collector):
    """Reads a node's counters and sizes when scraped (in the HTTP server's thread)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # What the store held when the node started (read in the loop's thread, now);
        # the host counts what it creates from then on.
        registers = node.store.count(REGISTER_PREFIX)
        self.keys_at_start = node.keys_known - registers
        self.registers_at_start = registers

    def describe(self) -> Iterable[Metric]:
        return []  # families with labels known only at scrape time

    def collect(self) -> Iterator[Metric]:
        node = self.node
        host, admission = node.host, node.admission
        yield from self._messages(node)
        yield CounterMetricFamily(
            "zpaxos_node_decisions_learned",
            "Decisions this node recorded as chosen (Decides, sync pages, checked claims).",
            value=node.learned)
        sockets = node.sockets
        wire = sockets.wire if sockets is not None else None
        zap = sockets.zap if sockets is not None else None
        yield _counter("zpaxos_node_malformed_frames",
                       "Frames dropped as malformed, by reason (the whole frame is dropped).",
                       "reason", MALFORMED_REASONS,
                       wire.malformed_by.copy() if wire is not None else {})
        yield _counter("zpaxos_node_connections_refused",
                       "Connections refused by CURVE authentication, by reason.",
                       "reason", REFUSAL_REASONS, zap.refused_by.copy() if zap else {})
        yield CounterMetricFamily(
            "zpaxos_node_handshakes_closed",
            "TCP connections closed before their CURVE handshake ended (health checks, "
            "port scans, a proxy whose client left): no refusal.",
            value=zap.closed if zap else 0)
        yield _counter("zpaxos_node_messages_refused",
                       "Messages dropped by admission (not voting yet, or not from a peer), "
                       "by reason.", "reason", DROP_REASONS, admission.dropped_by.copy())
        yield CounterMetricFamily(
            "zpaxos_node_messages_undeliverable",
            "Messages this node could not send (peer gone, send queue full).",
            value=wire.undeliverable if wire is not None else 0)
        yield GaugeMetricFamily(
            "zpaxos_node_longest_pass_seconds",
            "The loop's longest pass since the node started (a pass, a fold's slice, or a "
            "lazy commit): how long a message can wait behind the loop.",
            value=node.longest_pass_s)
        yield GaugeMetricFamily("zpaxos_node_keys", "Write-once keys this node holds state for.",
                                value=self.keys_at_start + host.created_keys)
        yield GaugeMetricFamily("zpaxos_node_registers", "Registers this node holds state for.",
                                value=self.registers_at_start + host.created_registers)
        queues = GaugeMetricFamily(
            "zpaxos_node_queue_depth",
            "Work waiting in the node: messages held until admitted (held), learned "
            "decisions waiting for a commit (lazy_decisions), value files to write "
            "(value_files).", labels=["queue"])
        queues.add_metric(["held"], len(admission.held))
        queues.add_metric(["lazy_decisions"], len(node.pending_decisions))
        queues.add_metric(["value_files"], node.values.backlog)
        yield queues
        yield from self._peers(node)

    def _messages(self, node: Node) -> Iterator[Metric]:
        fam = CounterMetricFamily(
            "zpaxos_node_messages",
            "Messages received, by type and what became of them (promised, accepted, "
            "nacked, decided, learned, known, refused, answered, handled, ignored...).",
            labels=["type", "outcome"])
        counts = node.host.handled.copy()
        for k, n in node.admission.handled.copy().items():
            counts[k] = counts.get(k, 0) + n
        for (t, outcome), n in sorted(counts.items(), key=lambda e: (e[0][0].__name__,
                                                                      e[0][1])):
            fam.add_metric([_type_label(t), outcome], n)
        yield fam

    def _peers(self, node: Node) -> Iterator[Metric]:
        names = node.peer_names
        sockets = node.sockets
        watch = sockets.watch if sockets is not None else None
        up = set(watch.up) if watch is not None else set()
        peer_up = GaugeMetricFamily("zpaxos_node_peer_up",
                                    "1 while this node's connection to the peer is up.",
                                    labels=["peer"])
        for peer, name in names.items():
            peer_up.add_metric([name], int(peer in up))
        yield peer_up
        yield GaugeMetricFamily("zpaxos_node_peers_reachable",
                                "Peers this node's connection to is up (itself not counted).",
                                value=len(up & names.keys()))
        yield GaugeMetricFamily("zpaxos_node_cluster_size",
                                "Nodes in the cluster file, this one included.",
                                value=len(names) + 1)
        yield GaugeMetricFamily("zpaxos_node_voting",
                                "1 once admission let this node vote (peers cleared it).",
                                value=int(node.admission.voting))
        info = GaugeMetricFamily("zpaxos_node_info", "This node's name (always 1).",
                                 labels=["node"])
        info.add_metric([node.cfg.name], 1)
        yield info


class ClientMetrics:
    """A proposer's metrics, in ``registry`` (a new one if None). Give it to a
    :class:`~zpaxos.runtime.client.Client`; serve it with :meth:`serve` (or with the
    registry your program already serves)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.proposals = Counter(
            "zpaxos_client_proposals", "Proposals ended, by result: chosen with our value "
            "(proposed), with an earlier one we adopted (adopted) or found chosen "
            "(already); or failed.", ["result"], registry=r)
        self.failures = Counter("zpaxos_client_proposal_failures",
                                "Proposals that ended with nothing chosen, by reason.",
                                ["reason"], registry=r)
        self.retries = Counter("zpaxos_client_round_retries",
                               "Rounds that failed and were retried, by cause.", ["cause"],
                               registry=r)
        self.rounds = Histogram("zpaxos_client_proposal_rounds",
                                "Rounds (ballots) one proposal took.", buckets=ROUNDS_BUCKETS,
                                registry=r)
        self.seconds = Histogram("zpaxos_client_proposal_duration_seconds",
                                 "From a proposal's start to its outcome.",
                                 buckets=PROPOSAL_BUCKETS_S, registry=r)
        for result in RESULTS:  # every series present from the start, at 0
            self.proposals.labels(result)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        for cause in RETRY_CAUSES:
            self.retries.labels(cause)
        self.serving: Serving | None = None

    def finished(self, outcome: Outcome, seconds: float) -> None:
        self.proposals.labels(outcome.how if outcome.chosen is not None else FAILED).inc()
        self.rounds.observe(outcome.rounds)
        self.seconds.observe(seconds)

    def saw(self, events: Iterable[Event]) -> None:
        for ev in events:
            if type(ev) is Retry:
                self.retries.labels(ev.cause).inc()
            elif type(ev) is GaveUp:
                self.failures.labels(ev.cause).inc()

    def ended_all(self, reason: str, in_flight: int) -> None:
        """Every proposal in flight ended without an outcome (``reason``: REFUSED or
        INTERRUPTED)."""
        if in_flight:
            self.failures.labels(reason).inc(in_flight)

    def serve(self, host: str, port: int) -> Serving:
        self.serving = Serving(self.registry, host, port)
        return self.serving

    def close(self) -> None:
        if self.serving is not None:
            self.serving.close()
            self.serving = None

__all__ = ["ClientMetrics", "NodeCollector", "NodeMetrics", "Serving"]
