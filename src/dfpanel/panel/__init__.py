"""The combiner of specialist verdicts, and its fitting."""
