"""``numWorkers > 1``: the barrier stage on the driver (``stage``) and one rank's training
process on an executor (``worker``)."""
