import Glibc

/// The next connection on a server's listening socket (close-on-exec), for
/// the relay's and the egress proxy's accept loops: EINTR and ECONNABORTED
/// are retried, EMFILE/ENFILE wait 50 ms and retry (connections ending free
/// descriptors), anything else ends the process naming `who`: a server
/// whose listening socket broke has nothing left to serve.
public func acceptNext(_ listenFD: Int32, who: String) -> Int32 {
    while true {
        let client = SocketInfo.accept(listenFD)
        if client >= 0 { return client }
        let e = errno
        if e == EINTR || e == ECONNABORTED { continue }
        if e == EMFILE || e == ENFILE { usleep(50_000); continue }
        printError("comfy-sandbox \(who): accept failed: \(Errno(e))")
        exit(1)
    }
}
