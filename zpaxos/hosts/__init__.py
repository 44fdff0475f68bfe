"""The pure hosts around the rules: a batch of messages (and the time) in, a ``Ready`` out
(what to persist, what to send, what was learned, what to log). No sockets, no clock, no
disk, no global randomness: the node and client loops (zpaxos/runtime/) feed them and do
what they say, and the simulator (zpaxos/sim/) drives exactly these.

acceptor_host.py (with acceptor_ready, _pages, _catchup, _checks, _ranges), admission.py
and verdicts.py (no vote before the peers say nothing was lost), catchup.py (what a node
asks its peers and fetches), watchers.py (register watchers' leases), keyrange.py (sorted
keys, prefix bounds); proposer_host.py, register_host.py, proposing.py (what both share),
staging.py (the textbook orderings), addresses.py (who a message came from).
"""
