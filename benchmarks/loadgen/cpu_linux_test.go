package loadgen

import (
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 5 50 800 20 3 2 1 40 0\ncpu0 50 2 25 400 10 1 1 0 20 0\ncpu1 50 3 25 400 10 2 1 1 20 0\nintr 12345\n"
	s, ok := parseProcStat(stat)
	if !ok {
		t.Fatal("not parsed")
	}
	// Busy: user, nice, system, irq, softirq, steal (guest is in user); total adds idle and iowait.
	if s.busy != 161*clockTick || s.total != 981*clockTick || s.cores != 2 {
		t.Fatalf("busy %s, total %s, cores %d; want %s, %s, 2", s.busy, s.total, s.cores, 161*clockTick, 981*clockTick)
	}
	if _, ok := parseProcStat("intr 1\n"); ok {
		t.Fatal("parsed a stat without the cpu line")
	}
}

func TestCPUBetween(t *testing.T) {
	t.Parallel()
	a := cpuSample{process: time.Second, busy: 10 * time.Second, total: 40 * time.Second, cores: 2}
	b := cpuSample{process: 4 * time.Second, busy: 17 * time.Second, total: 48 * time.Second, cores: 2}
	c := cpuBetween(a, b)
	if c.ProcessSeconds != 3 || c.OthersSeconds != 4 || c.BusyShare != 0.875 || c.Cores != 2 {
		t.Fatalf("got %+v, want 3 s, 4 s others, 0.875 busy, 2 cores", c)
	}
	// The process's time counted in ticks may exceed the machine's by a rounding: the
	// others' time is never negative.
	b.busy = 12 * time.Second
	if c := cpuBetween(a, b); c.OthersSeconds != 0 {
		t.Fatalf("others %v, want 0", c.OthersSeconds)
	}
}

func TestReadCPU(t *testing.T) {
	t.Parallel()
	m := startCPU()
	if m == nil {
		t.Fatal("cannot read this machine's CPU times")
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); { //nolint:revive // burn CPU
	}
	c := m.stop()
	if c == nil || c.ProcessSeconds <= 0 || c.Cores < 1 || c.BusyShare <= 0 || c.BusyShare > 1 {
		t.Fatalf("got %+v after 50 ms of this process's CPU", c)
	}
}
