import Foundation
import Hummingbird
import Logging

/// The request context of every route: the core storage, the request id, and the body limit.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String = ""
    public var maxUploadSize: Int = 1 << 20

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }
}

extension AppRequestContext {
    /// An id path parameter, percent-decoded; one that no record could have is simply not found.
    func pathID(_ name: String) throws -> String {
        guard let id = parameters.get(name)?.removingPercentEncoding, (1...100).contains(id.count), !id.hasControlCharacters else {
            throw APIError.notFound("\(name) not found")
        }
        return id
    }
}
