"""CSVReader on the Air Quality file: missing-value markers, typed values, one corrupt row."""

from pathlib import Path

from chronopipe import CSVReader

path = Path(__file__).parent / "data" / "AirQualityUCI.csv"
reader = CSVReader(path, typed=True, na_values=["-200"], timestamp=("Date", "Time"))
rows = list(reader)  # iterated here, in this process: no actor needed

print(f"{len(rows)} rows, {reader.rejected} rejected")
print("first:", rows[0]["timestamp"], "CO(GT) =", rows[0]["CO(GT)"])
for reject in reader.rejects:
    print(f"rejected {Path(reject.file).name}:{reject.line}: {reject.reason}")
missing = sum(row["NMHC(GT)"] is None for row in rows)
print(f"NMHC(GT) missing (-200) in {missing} rows")
