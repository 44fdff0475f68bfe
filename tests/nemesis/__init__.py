"""The nemesis: a zpaxos cluster across network namespaces under a seeded fault schedule.

    python -m tests.nemesis --minutes 30 --seed 7       (as root; see tests/nemesis/README.md)
"""
