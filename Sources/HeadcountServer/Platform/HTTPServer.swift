import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

extension HTTPServerBuilder {
    /// Hummingbird's HTTP/1.1 server, with its idle timeout (a connection with no request in
    /// progress closes after `idleTimeout`) and the rules of `ConnectionRules`.
    static func headcount(idleTimeout: Duration, headerTimeout: Duration, bodyTimeout: Duration) -> HTTPServerBuilder {
        .init { responder in
            GuardedHTTP1Channel(
                http1: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .init(idleTimeout))),
                headerTimeout: .init(headerTimeout), bodyTimeout: .init(bodyTimeout)
            )
        }
    }
}

/// `HTTP1Channel` with `ConnectionRules` added to each connection's pipeline.
struct GuardedHTTP1Channel: ServerChildChannel {
    let http1: HTTP1Channel
    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let rules = ConnectionRules(headerTimeout: headerTimeout, bodyTimeout: bodyTimeout)
            // Between NIO's decoder and Hummingbird's conversion to HTTP types, where the HTTP
            // version and parse errors are still visible.
            try pipeline.addHandler(rules, position: .after(try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)))
            return value
        }
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

/// The connection rules Hummingbird leaves to the application:
/// - **slow requests**: once a request's first bytes arrive, its head must be complete within
///   `headerTimeout`, and then its body within `bodyTimeout`, or the connection closes (a client
///   trickling headers or a body cannot hold it open);
/// - **HTTP/1.0**: without `Connection: keep-alive`, the connection closes after the response, as
///   it does after any answer that says `Connection: close` (an early 413, a broken body);
/// - **unparsable requests** (a bad `Content-Length`, `Content-Length` with `Transfer-Encoding`,
///   too many or too large headers) get the JSON error body every other error has; Hummingbird
///   answers them with an empty 400 and closes the connection.
final class ConnectionRules: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let headerTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    /// How often the deadline is checked: one timer per connection, not one per request (two
    /// timers per request cost a tenth of a cheap GET's throughput).
    private let tick: TimeAmount
    private var context: ChannelHandlerContext?
    private var heads = 0
    private var responses = 0
    /// When the head must be complete, until it is read; then when the request's body must be.
    private var deadline: NIODeadline?
    private var ticker: Scheduled<Void>?
    private var closeAfterResponse = false
    private var http10KeepAlive = false
    /// The parser's error, and how many heads had been read when it came: the answer after
    /// theirs is the one Hummingbird writes for the error.
    private var parseError: (error: HTTPParserError, heads: Int)?

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        tick = max(.milliseconds(50), min(.seconds(1), .nanoseconds(min(headerTimeout, bodyTimeout).nanoseconds / 4)))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        check()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        ticker?.cancel()
        self.context = nil
    }

    /// Closes the connection once its deadline has passed; else looks again a tick later.
    private func check() {
        guard let context else { return }
        if let deadline, .now() > deadline {
            context.close(promise: nil)
            return
        }
        ticker = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: tick) { self.check() }
    }

    /// Bytes were read (the decoder passes on every read, whole heads or not): if no request is
    /// in progress, they start one, and its head's deadline.
    func channelReadComplete(context: ChannelHandlerContext) {
        if heads == responses, deadline == nil { deadline = .now() + headerTimeout }
        context.fireChannelReadComplete()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            heads += 1
            deadline = .now() + bodyTimeout
            if head.version.major == 1, head.version.minor == 0 {
                // HTTP/1.0 closes unless asked not to, and then says so in the answer.
                if head.isKeepAlive { http10KeepAlive = true } else { closeAfterResponse = true }
            }
        case .body:
            break
        case .end:
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? HTTPParserError, parseError == nil { parseError = (error, heads) }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            if let parseError, responses == parseError.heads, head.status == .badRequest {
                let body = Self.errorBody(parseError.error)
                head.headers.replaceOrAdd(name: "Content-Type", value: "application/json; charset=utf-8")
                head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
                head.headers.replaceOrAdd(name: "X-Content-Type-Options", value: "nosniff")
                context.write(wrapOutboundOut(.head(head)), promise: promise)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                return
            }
            // An answer that says it closes the connection (an early 413, a broken body) does.
            if head.headers["connection"].contains(where: { $0.lowercased() == "close" }) { closeAfterResponse = true }
            if closeAfterResponse {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
            } else if http10KeepAlive {
                head.headers.replaceOrAdd(name: "Connection", value: "keep-alive")
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            responses += 1
            guard closeAfterResponse, responses >= heads else { return context.write(data, promise: promise) }
            context.writeAndFlush(data, promise: promise)
            context.close(promise: nil)
        }
    }

    static func errorBody(_ error: HTTPParserError) -> ByteBuffer {
        let message = "malformed HTTP request (\(error)): check Content-Length, Transfer-Encoding and the size and number of headers"
        return (try? jsonBytes(ErrorBody(message: message))) ?? ByteBuffer()
    }
}
