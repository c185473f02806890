"""An executable task (the worker's proxy; the direct path when it can) that
asks the services at once, as a newcomer would."""
import json
import sys
import time

import numpy as np

import tandem

report = {}
x = np.ones((3, 4), np.float32)
# A client that will not wait long is told so (through the proxy)...
impatient = tandem.Client(ready_timeout=0.05)
try:
    impatient.infer("late", {"x": x})
    report["impatient"] = "answered"
except tandem.ServiceError as e:
    report["impatient"] = str(e)
impatient.close()
# ... and one that does not say waits for the service to load.
client = tandem.Client()
assert client.ready_timeout is None
t0 = time.monotonic()
report["late"] = float(client.infer("late", {"x": x})["x"].sum())
report["late_waited_s"] = time.monotonic() - t0
report["y"] = float(client.infer("slow", {"x": x})["y"].sum())   # waits while it loads
t0 = time.monotonic()
try:
    client.infer("broken", {"x": x})
    report["broken"] = "answered"
except tandem.ServiceError as e:
    report["broken"] = str(e)
report["broken_s"] = time.monotonic() - t0
json.dump(report, sys.stdout)
