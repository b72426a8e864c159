"""EventManager: callbacks registered on conditions, run for the events that satisfy them.

The first half is the seed's documented usage, ported to Python 3 (``startswith``, not the
JavaScript ``startsWith``); the second shows conditions, results and statistics.
"""

import chronopipe as cp
from chronopipe.events import EventManager, between, exists, not_

# -- the seed's usage: a Manager queue consumed on a runtime thread, a process pool ------
queue = cp.MultiProcessing().Manager().Queue()
event_manager = EventManager(queue, async_pool=cp.MultiProcessing().ProcessPool()).run()
commands = []
responses = []
event_manager.register(
    callback=lambda event: commands.append(event) or event["action"].upper(),
    condition={"name.type": ["command", "response"], "action": lambda x: x.startswith("test")},
    options={"async": True},
)
event_manager.register(lambda event: responses.append(event), condition={"type": "response"})
queue.put({"name": {"type": "command"}, "action": "testCommand"})
queue.put({"type": "response", "value": "success"})
event_manager.trigger({"type": "response", "value": "complete"})
queue.put(cp.END)
event_manager.join(timeout=30)

print("responses:", sorted(r["value"] for r in responses))
print("commands:", commands, "(appended in a pool process, to its copy of the list)")
[pending] = event_manager.trigger({"name": {"type": "command"}, "action": "testAgain"})
print("returned from the pool:", pending.wait(timeout=30))

# -- conditions and results --------------------------------------------------------------
manager = EventManager(name="checks")
manager.register(lambda e: f"{e['sensor']['id']} out of range",
                 {"sensor.kind": "temperature", "value": not_(between(-20, 60))})
manager.register(lambda e: "no error code", {"code": 0})  # 0 is a value, not a missing field
manager.register(lambda e: 1 / e["divisor"], {"divisor": exists()}, {"name": "divide"})

print(manager.trigger({"sensor": {"kind": "temperature", "id": "t-7"}, "value": 75.5, "code": 0}))
print(manager.trigger({"sensor": {"kind": "temperature", "id": "t-8"}, "value": 21.0}))
[failed] = manager.trigger({"divisor": 0})
print("failed:", failed.error.actor, failed.error.exc_type, failed.error.message)
print(manager.statistics())
