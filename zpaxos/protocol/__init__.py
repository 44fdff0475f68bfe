"""The protocol: ballots and messages, the message registry, and the pure Paxos rules."""
