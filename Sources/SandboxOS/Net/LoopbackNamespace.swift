import CSandbox
import Glibc

/// Network namespaces with nothing but `lo`, up.
public enum LoopbackNamespace {
    /// A new one (setns-able, close-on-exec fd), or -1 with errno.
    public static func make() -> Int32 { cs_new_loopback_netns() }

    /// Moves the calling thread into a new one and returns its fd (-1 and
    /// errno on failure): for a thread that ends right after.
    public static func enterNew() -> Int32 { cs_loopback_netns_here() }

    /// A TCP socket listening on 127.0.0.1:`port` inside the namespace
    /// `namespace` (close-on-exec; -1 and errno on failure), made on a thread
    /// of its own that joins it and ends: a socket keeps the namespace it was
    /// made in, so a process in the host's namespace can serve it.
    public static func listen(in namespace: Int32, port: UInt16) -> Int32 { cs_listen_in_netns(namespace, port) }
}
