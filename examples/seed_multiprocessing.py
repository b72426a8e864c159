"""The seed's MultiProcessing singleton: one shared pool per process, lambdas welcome (dill)."""

from chronopipe import MultiProcessing

pool = MultiProcessing().GlobalProcessPool()
assert pool is MultiProcessing().GlobalProcessPool()  # reused, not re-created

threshold = 3
print(pool.map(lambda x: x > threshold, range(6)))  # pathos' own API on the shared pool
print(MultiProcessing().map(lambda x: x * x, range(6)))  # the runtime's map: never hangs on a dead worker
