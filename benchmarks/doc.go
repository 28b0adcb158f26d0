// Package benchmarks measures Herald stage by stage and end to end:
//
//	go test -run '^$' -bench . -benchmem ./benchmarks/
//
// Results are benchstat-friendly; custom metrics (events/s) are reported per benchmark.
package benchmarks
