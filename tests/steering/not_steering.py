"""An executable task without steering = true that tries to submit."""
import tandem

try:
    tandem.Steering().submit("square", {"x": 1})
except tandem.ArgumentError as e:
    print("refused:", e)
