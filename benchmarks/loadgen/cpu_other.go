//go:build !linux

package loadgen

func readCPU() (cpuSample, bool) { return cpuSample{}, false }
