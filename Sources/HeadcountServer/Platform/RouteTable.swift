import Hummingbird
import Synchronization

/// The router's routes, kept to tell "no such path" (404) from "no such method here" (405),
/// and to check the OpenAPI document against what is really served.
public final class RouteTable: Sendable {
    private let routes = Mutex<[(pattern: [Substring], method: HTTPRequest.Method)]>([])

    func record(_ routes: [(path: String, method: HTTPRequest.Method)]) {
        self.routes.withLock { $0 = routes.map { ($0.path.split(separator: "/"), $0.method) } }
    }

    /// The methods served at `path`, or nil when no route matches it.
    func methods(for path: String) -> [HTTPRequest.Method]? {
        let components = path.split(separator: "/")
        let methods = routes.withLock { routes in
            routes.filter { Self.matches($0.pattern, components) }.map(\.method)
        }
        return methods.isEmpty ? nil : methods
    }

    private static func matches(_ pattern: [Substring], _ components: [Substring]) -> Bool {
        guard pattern.count == components.count else { return false }
        return zip(pattern, components).allSatisfy { p, c in
            guard let open = p.firstIndex(of: "{"), let close = p.firstIndex(of: "}") else { return p == "*" || p == c }
            let prefix = p[..<open], suffix = p[p.index(after: close)...]
            return c.count > prefix.count + suffix.count && c.hasPrefix(prefix) && c.hasSuffix(suffix)
        }
    }
}
