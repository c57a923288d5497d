import SQLKit

/// One gauge of `/metrics`, in the Prometheus text format.
struct Gauge: Sendable {
    let name: String
    let help: String
    var samples: [(labels: [(String, String)], value: String)] = []

    init(_ name: String, _ help: String) {
        self.name = name
        self.help = help
    }

    mutating func add(_ value: some Numeric & CustomStringConvertible, _ labels: (String, String)...) {
        samples.append((labels, value.description))
    }

    var text: String {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) gauge\n"
        for sample in samples {
            let labels = sample.labels.map { "\($0)=\"\(Self.escape($1))\"" }.joined(separator: ",")
            text += labels.isEmpty ? "\(name) \(sample.value)\n" : "\(name){\(labels)} \(sample.value)\n"
        }
        return text
    }

    /// A label value: backslash, quote and line feed escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// The domain gauges of `/metrics`, each family contributing its own (people per room, occupancy
/// per sensor, seats per event, active devices per tenant). They are read from the database at
/// scrape time, in one session, so every instance reports the same, current values and a deleted
/// event simply stops appearing.
struct DomainMetrics: Sendable {
    typealias Family = @Sendable (any SQLDatabase) async throws -> [Gauge]

    let database: any Database
    let families: [Family]

    func render() async throws -> String {
        try await database.read { db in
            var text = ""
            for family in families { text += try await family(db).map(\.text).joined() }
            return text
        }
    }
}
