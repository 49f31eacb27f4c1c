// Go peer (goroutines, channels, sync.WaitGroup, time.Sleep) for weft's benchmark driver.
// Standard library only.
//
// usage: go-peer <workload> <n> [k | -k <k>] [-w <workers>]
// (workers default 2 -> GOMAXPROCS; k: gather only, default 10)
// prints: go <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<ru_maxrss>
//
// Timing EXCLUDES runtime start (Go's scheduler is already running when main starts):
// the clock starts after runtime.GOMAXPROCS(workers), just before the root work begins.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Lace style: spawn fib(n-1) as a goroutine, compute fib(n-2) directly, wait.
func fib(n int64) int64 {
	if n < 2 {
		return n
	}
	var a int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		a = fib(n - 1)
		wg.Done()
	}()
	b := fib(n - 2)
	wg.Wait()
	return a + b
}

func skynet(num, size int64, out chan<- int64) {
	if size == 1 {
		out <- num
		return
	}
	sub := size / 10
	ch := make(chan int64, 10)
	for i := int64(0); i < 10; i++ {
		go skynet(num+i*sub, sub, ch)
	}
	var s int64
	for i := 0; i < 10; i++ {
		s += <-ch
	}
	out <- s
}

func spawnAll(n int64) int64 {
	res := make([]int64, n)
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func(i int64) {
			res[i] = 1
			wg.Done()
		}(i)
	}
	wg.Wait()
	var s int64
	for _, v := range res {
		s += v
	}
	return s
}

// gatherEach runs n goroutines, each computing body(i), and returns the sum of the results.
func gatherEach(n int64, body func(i int64) int64) int64 {
	res := make([]int64, n)
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func(i int64) {
			res[i] = body(i)
			wg.Done()
		}(i)
	}
	wg.Wait()
	var s int64
	for _, v := range res {
		s += v
	}
	return s
}

// injectAll: 8 goroutines spawn n goroutines in all (each its share), each spawner waits for
// its own; the sum of the results.
func injectAll(n int64) int64 {
	const spawners = 8
	sums := make([]int64, spawners)
	var outer sync.WaitGroup
	outer.Add(spawners)
	for s := int64(0); s < spawners; s++ {
		count := n / spawners
		if s < n%spawners {
			count++
		}
		go func(s, count int64) {
			defer outer.Done()
			sums[s] = spawnAll(count)
		}(s, count)
	}
	outer.Wait()
	var total int64
	for _, v := range sums {
		total += v
	}
	return total
}

// Synchronisation and channels (weft issue 11): pingpong, chan, mutex.

// pingpong: n round trips between two goroutines over two unbuffered channels.
func pingpong(n int64) int64 {
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for i := int64(0); i < n; i++ {
			pong <- <-ping
		}
	}()
	var s int64
	for i := int64(0); i < n; i++ {
		ping <- 1
		s += <-pong
	}
	return s
}

// chanThroughput: 4 producers and 4 consumers move n values through a chan of capacity 1024.
func chanThroughput(n int64) int64 {
	c := make(chan int64, 1024)
	var prod, cons sync.WaitGroup
	var mu sync.Mutex
	var total int64
	per := n / 4
	for p := 0; p < 4; p++ {
		prod.Add(1)
		go func() {
			defer prod.Done()
			for i := int64(0); i < per; i++ {
				c <- 1
			}
		}()
	}
	for q := 0; q < 4; q++ {
		cons.Add(1)
		go func() {
			defer cons.Done()
			var s int64
			for v := range c {
				s += v
			}
			mu.Lock()
			total += s
			mu.Unlock()
		}()
	}
	prod.Wait()
	close(c)
	cons.Wait()
	return total
}

// mutexContended: 8 goroutines each lock, increment, unlock n/8 times.
func mutexContended(n int64) int64 {
	var mu sync.Mutex
	var counter int64
	var wg sync.WaitGroup
	per := n / 8
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); i < per; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counter
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-peer <fib|skynet|spawn|yield|sleep|cancel|gather|inject|pingpong|chan|mutex> <n> [k | -k k] [-w workers]")
	os.Exit(2)
}

func main() {
	wl := ""
	n := int64(-1)
	k := int64(10)
	workers := 2
	pos := 0
	kset := false
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		if args[i] == "-w" && i+1 < len(args) {
			i++
			w, err := strconv.Atoi(args[i])
			if err != nil {
				usage()
			}
			workers = w
			continue
		}
		if args[i] == "-k" && i+1 < len(args) {
			i++
			v, err := strconv.ParseInt(args[i], 10, 64)
			if err != nil {
				usage()
			}
			k = v
			kset = true // an explicit -k wins over a positional k
			continue
		}
		switch pos {
		case 0:
			wl = args[i]
		case 1, 2:
			v, err := strconv.ParseInt(args[i], 10, 64)
			if err != nil {
				usage()
			}
			if pos == 1 {
				n = v
			} else if !kset {
				k = v
			}
		}
		pos++
	}
	if wl == "" || n < 0 || workers < 1 {
		usage()
	}
	runtime.GOMAXPROCS(workers)

	var r int64
	t0 := time.Now()
	switch wl {
	case "fib":
		r = fib(n)
	case "skynet":
		ch := make(chan int64, 1)
		go skynet(0, n, ch)
		r = <-ch
	case "spawn":
		r = spawnAll(n)
	case "inject":
		r = injectAll(n)
	case "yield":
		per := n / 1000
		r = gatherEach(1000, func(int64) int64 {
			var c int64
			for j := int64(0); j < per; j++ {
				runtime.Gosched()
				c++
			}
			return c
		})
	case "sleep":
		r = gatherEach(n, func(i int64) int64 {
			time.Sleep(time.Duration(i*7919%1000) * time.Millisecond)
			return i
		})
	case "cancel": // n goroutines wait an hour or for their context; one cancel ends them all
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var cancelled int64
		var mu sync.Mutex
		for i := int64(0); i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTimer(time.Hour)
				select {
				case <-ctx.Done():
					t.Stop()
					mu.Lock()
					cancelled++
					mu.Unlock()
				case <-t.C:
				}
			}()
		}
		cancel()
		wg.Wait()
		r = cancelled
	case "gather":
		r = gatherEach(n, func(int64) int64 {
			var c int64
			for j := int64(0); j < k; j++ {
				time.Sleep(time.Millisecond)
				c++
			}
			return c
		})
	case "pingpong":
		r = pingpong(n)
	case "chan":
		r = chanThroughput(n)
	case "mutex":
		r = mutexContended(n)
	default:
		usage()
	}
	ms := float64(time.Since(t0).Nanoseconds()) / 1e6
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("go %s n=%d r=%d ms=%.1f rss_kb=%d\n", wl, n, r, ms, ru.Maxrss)
}
