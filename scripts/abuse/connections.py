#!/usr/bin/env python3
"""Connection-level findings against a running server: URL and the server's pid.

F1: 20 silent and 20 trickling connections, 15 s later; a Content-Length of 1e9.
F2: the byte size of an event page at seq 1 (a 4 MiB proposal), and the server's RSS
    while 16 clients that do not read ask for it. F7: the bodies of refusals.
"""
import socket, time, sys, subprocess, json, urllib.request, os, threading
url, pid = sys.argv[1], int(sys.argv[2])
host, port = url.split("//")[1].split(":"); port=int(port)
def rss(): return int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])//1024
# F1: 20 silent, 20 trickling
silent=[socket.create_connection((host,port)) for _ in range(20)]
trick=[socket.create_connection((host,port)) for _ in range(20)]
t0=time.time()
def alive(s):
    s.setblocking(False)
    try:
        d=s.recv(1)
        return False if d==b'' else True
    except BlockingIOError: return True
    except OSError: return False
for s in trick: s.send(b"GET /healthz HTTP/1.1\r\n")
while time.time()-t0<15:
    for s in trick:
        try: s.send(b"X-a: b\r\n")
        except OSError: pass
    time.sleep(1)
print(f"F1 after 15 s: {sum(alive(s) for s in silent)}/20 silent and {sum(alive(s) for s in trick)}/20 trickling connections still open")
s=socket.create_connection((host,port)); t=time.time()
s.send(b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
r=s.recv(4096).split(b"\r\n")[0]; print(f"F1 Content-Length 1e9: {r.decode()} in {1000*(time.time()-t):.0f} ms")
# F2: page bytes and non-reading clients
r=urllib.request.urlopen(f"{url}/v1/events?from=1&limit=1000&format=proto").read()
print(f"F2 one /v1/events page: {len(r)/2**20:.1f} MiB of JSON, {len(json.loads(r))} records" if r[:1]==b'[' else f"F2 page {len(r)/2**20:.1f} MiB")
before=rss()
stall=[]
for _ in range(16):
    c=socket.create_connection((host,port)); c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(f"GET /v1/events?from=1&limit=1000&format=proto HTTP/1.1\r\nHost: x\r\n\r\n".encode()); stall.append(c)
time.sleep(5); mid=rss(); time.sleep(30); after=rss()
print(f"F2 16 clients that do not read: RSS {before} -> {mid} MiB after 5 s, {after} MiB after 35 s; {sum(alive(c) for c in stall)}/16 still open")
# F7
for path,method in [("/nope","GET"),("/v1/head","POST"),("/v1/events?limit=-1","GET"),("/v1/events/ws","GET")]:
    req=urllib.request.Request(url+path, method=method)
    try: urllib.request.urlopen(req)
    except urllib.error.HTTPError as e: print(f"F7 {method} {path}: {e.code} {e.headers.get('content-type')} {e.read()[:80].decode()}")
