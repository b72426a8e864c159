import time


def cb(packet):
    time.sleep(3600)


def rules(em):
    em.register(cb, {"tcp.dport": 22, "tcp.flags": 2}, {"name": "hang", "timeout": 0.05})
