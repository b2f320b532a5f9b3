"""`thisthat seed`'s players file as the CSV Artillery's --payload reads (username,accessToken).

python -m bench.players_csv players.json players.csv
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def convert(players_file: Path, out: Path) -> int:
    players = json.loads(players_file.read_text())["players"]
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for player in players:
            writer.writerow([player["username"], player["accessToken"]])
    out.chmod(0o600)  # live tokens
    return len(players)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.players_csv players.json players.csv")
    count = convert(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{count} player(s) written to {sys.argv[2]}")
