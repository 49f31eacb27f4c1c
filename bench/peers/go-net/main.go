// Go peers for weft's server benchmarks (bench/servers.py). Standard library only.
//
// usage: go-net http PORT     net/http serving GET / with "hello, world\n" (keep-alive)
//        go-net echo PORT     a goroutine per connection copying what it reads back
// GOMAXPROCS comes from the environment (the driver sets it to weft's worker count).
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go-net http|echo PORT")
		os.Exit(2)
	}
	addr := "127.0.0.1:" + os.Args[2]
	switch os.Args[1] {
	case "http":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "hello, world\n")
		})
		fmt.Println("go-net: listening")
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "echo":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("go-net: listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				continue
			}
			go func(c net.Conn) {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						break
					}
					if _, err := c.Write(buf[:n]); err != nil {
						break
					}
				}
				c.Close()
			}(c)
		}
	}
}
