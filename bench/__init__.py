"""`make bench`: the benchmark suite; figures are printed and filed in bench/results, never asserted."""
