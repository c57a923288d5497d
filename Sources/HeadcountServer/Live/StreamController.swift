import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /api/stream`: the change feed as server-sent events. Each change is one event with its
/// feed id; a comment every heartbeat keeps proxies from closing a quiet stream and notices
/// clients that left. The `attendance` and `rollcalls` topics carry tenants' data and names, and
/// take the admin key.
struct StreamController {
    let feed: ChangeFeed
    let adminKey: String

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("api/stream") { request, _ in
            let topics = try Self.topics(request)
            if let named = topics.intersection(Topic.admin).first {
                // EventSource cannot send headers, so the dashboard passes the key as `admin_key`.
                guard let given = request.headers[.adminToken] ?? request.bearerToken ?? request.uri.queryParameters["admin_key"].map(String.init),
                    Secret.equal(given, adminKey)
                else { throw APIError(.unauthorized, "the \(named.rawValue) topic takes the admin key: X-Admin-Token, a bearer token or ?admin_key=") }
            }
            let lastEventID = request.headers[.lastEventID] ?? request.uri.queryParameters["lastEventId"].map(String.init)
            let subscription = feed.subscribe(topics, after: lastEventID.map(feed.position))
            let feed = feed
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache", .accelBuffering: "no"],
                body: ResponseBody { writer in
                    defer { feed.end(subscription.id) }
                    try await withGracefulShutdownHandler {
                        try await Self.stream(subscription, feed: feed, to: &writer)
                    } onGracefulShutdown: {
                        feed.end(subscription.id)
                    }
                    try await writer.finish(nil)
                }
            )
        }
    }

    private static func stream(_ subscription: ChangeFeed.Subscription, feed: ChangeFeed, to writer: inout any ResponseBodyWriter) async throws {
        var opening = "retry: 3000\n: connected\n\n"
        if !subscription.resumed {
            opening += event("reset", #"{"reason":"the feed no longer holds the changes after Last-Event-ID; reload the state"}"#)
        }
        try await writer.write(ByteBuffer(string: opening))
        while let parts = await feed.next(subscription.id) {
            try await writer.write(contentsOf: parts)
        }
    }

    static func event(_ type: String, _ data: String) -> String {
        "event: \(type)\ndata: \(data)\n\n"
    }

    /// `?topics=rooms,sensors`; all topics but the admin ones when absent. An unknown topic is a 400.
    static func topics(_ request: Request) throws -> Set<Topic> {
        guard let text = request.uri.queryParameters["topics"] else { return Set(Topic.allCases).subtracting(Topic.admin) }
        var topics = Set<Topic>()
        for name in text.split(separator: ",") {
            guard let topic = Topic(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw APIError.badRequest("unknown topic '\(name)'; use \(Topic.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            topics.insert(topic)
        }
        guard !topics.isEmpty else { throw APIError.badRequest("topics is empty") }
        return topics
    }
}

extension HTTPField.Name {
    /// Tells nginx not to buffer the stream.
    static let accelBuffering = Self("X-Accel-Buffering")!
}
