package loadgen

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/stat's times: USER_HZ, 100 on every Linux
// architecture Go runs on (sysconf(_SC_CLK_TCK)).
const clockTick = 10 * time.Millisecond

func readCPU() (cpuSample, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuSample{}, false
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, false
	}
	s, ok := parseProcStat(string(b))
	s.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return s, ok
}

// parseProcStat reads the machine's busy and total time from /proc/stat's first line
// (user nice system idle iowait irq softirq steal ..., in clock ticks; guest time is in
// user's already) and counts the cores by their lines.
func parseProcStat(stat string) (cpuSample, bool) {
	var s cpuSample
	lines := strings.Split(stat, "\n")
	f := strings.Fields(lines[0])
	if len(f) < 5 || f[0] != "cpu" {
		return s, false
	}
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, false
		}
		t := time.Duration(n) * clockTick
		s.total += t
		if i != 3 && i != 4 { // idle, iowait
			s.busy += t
		}
	}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "cpu") {
			s.cores++
		}
	}
	return s, true
}
