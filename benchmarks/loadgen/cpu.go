package loadgen

import "time"

// CPU is where the processor time of a phase of the run went, to tell what limited
// it: Herald (and the core's writers, in this process), the other processes of the
// machine (the database server, when it runs here), or the machine itself. Measured on
// Linux only; absent elsewhere.
type CPU struct {
	// ProcessSeconds is this process's user and system time: Herald's when it runs in
	// process, the core's writers' and loadgen's own.
	ProcessSeconds float64 `json:"process_seconds"`
	// OthersSeconds is the busy time of the machine's other processes: the database
	// server's when it runs on this machine, anything else's too.
	OthersSeconds float64 `json:"others_seconds"`
	// BusyShare is the machine's busy time over the phase, as a share of all its
	// cores' time: near 1, the machine was the limit, not Herald or the database alone.
	BusyShare float64 `json:"busy_share"`
	Cores     int     `json:"cores"`
}

// cpuSample is what cpuMeter compares: this process's CPU time and the machine's busy
// and total time of all cores.
type cpuSample struct {
	process     time.Duration
	busy, total time.Duration
	cores       int
}

// cpuMeter measures a phase from start to stop; nil where the machine's times cannot
// be read.
type cpuMeter struct{ start cpuSample }

func startCPU() *cpuMeter {
	s, ok := readCPU()
	if !ok {
		return nil
	}
	return &cpuMeter{start: s}
}

// stop returns the phase's CPU (nil for a nil meter or an unreadable end).
func (m *cpuMeter) stop() *CPU {
	if m == nil {
		return nil
	}
	end, ok := readCPU()
	if !ok {
		return nil
	}
	return cpuBetween(m.start, end)
}

func cpuBetween(a, b cpuSample) *CPU {
	process, busy, total := b.process-a.process, b.busy-a.busy, b.total-a.total
	c := &CPU{ProcessSeconds: round(process.Seconds(), 2), OthersSeconds: round(max(busy-process, 0).Seconds(), 2),
		Cores: b.cores}
	if total > 0 {
		c.BusyShare = round(min(float64(busy)/float64(total), 1), 3)
	}
	return c
}
