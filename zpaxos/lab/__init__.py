"""The lab: scenarios on a real local cluster, the process launcher, and the benchmark."""
