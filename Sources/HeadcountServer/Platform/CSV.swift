import Hummingbird

/// RFC 4180 CSV: CRLF line ends, fields quoted when they hold a comma, quote or line break.
enum CSV {
    static func row(_ fields: [String]) -> String {
        fields.map(field).joined(separator: ",") + "\r\n"
    }

    static func field(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A CSV download written a page at a time, so memory holds one page however long the file:
    /// `next` gives the rows after a cursor (nil: from the start) and the cursor of its last row;
    /// no rows ends the file.
    static func stream<Cursor: Sendable>(
        filename: String, header: [String], next: @escaping @Sendable (Cursor?) async throws -> (rows: [[String]], cursor: Cursor?)
    ) -> Response {
        response(
            filename: filename,
            body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: row(header)))
                var cursor: Cursor?
                while true {
                    let page = try await next(cursor)
                    guard !page.rows.isEmpty else { break }
                    try await writer.write(ByteBuffer(string: page.rows.map(row).joined()))
                    guard let last = page.cursor else { break }
                    cursor = last
                }
                try await writer.finish(nil)
            })
    }

    /// A CSV download saved as `filename`.
    static func response(filename: String, body: ResponseBody) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(filename)\""],
            body: body
        )
    }
}

extension String {
    /// This text if it is safe in a file name (letters, digits, `-`, `_`), else `fallback`.
    func slug(or fallback: String) -> String {
        !isEmpty && allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") } ? self : fallback
    }
}
