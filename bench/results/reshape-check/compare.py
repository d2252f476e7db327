"""Print the numbers of before.json and after.json side by side (see README.md here)."""
import json
from pathlib import Path

here = Path(__file__).parent
b, a = (json.loads((here / f).read_text()) for f in ("before.json", "after.json"))
print("blocks", {m: v["blocks"] for m, v in b["analyze"]["blocks"].items()},
      {m: v["blocks"] for m, v in a["analyze"]["blocks"].items()})
print("prune teacher", b["prune"]["teacher"]["test_accuracy"], a["prune"]["teacher"]["test_accuracy"])
for n in b["prune"]["strategies"]:
    print("order", n, b["prune"]["strategies"][n]["order"], a["prune"]["strategies"][n]["order"])
print("best", b["prune"]["best"]["deleted_layers"], a["prune"]["best"]["deleted_layers"])
for k in ("mimic", "share"):
    for v in b[k]:
        print(k, v, b[k][v]["accuracy"], a[k][v]["accuracy"])
print("wer", b["wer"]["wer"], a["wer"]["wer"])
