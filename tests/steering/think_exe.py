"""Python steering from an executable task, through the worker's proxy."""
import json

import tandem

steer = tandem.Steering()
handles = steer.submit_many("square", [{"x": x} for x in range(1000, 1010)])
again = steer.submit("square", {"x": 1000}, key="first-again")
results = steer.wait(handles + [again])
print(json.dumps({"ys": [r.result["y"] for r in results],
                  "states": sorted({r.state for r in results})}))
try:
    steer.wait([10 ** 9])
except tandem.ArgumentError as e:
    print("unknown handle:", e)
