"""A rules file with a bug (docs/validate.md): port_ratio divides by zero on every packet to port 22."""

CHECKS = {"tcp": False, "duplicates": False, "clock": False}


def port_ratio(record):
    return 100 // (record["tcp"]["dport"] - 22)


def rules(em):
    em.register(port_ratio, {"tcp.dport": 22}, {"name": "port-ratio"})
    em.register(lambda r: "SYN to 22", {"tcp.dport": 22, "tcp.flags": 2}, {"name": "ssh-syn"})
