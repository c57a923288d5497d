import Foundation
import Testing

/// The repository explains itself: every link in the README and in `docs/` leads to a file of the
/// repository (a clone has nothing else), and the architecture page names only files that exist.
@Suite("Repository docs") struct RepositoryDocsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var pages: [URL] {
        let docs = (try? FileManager.default.contentsOfDirectory(at: root.appendingPathComponent("docs"), includingPropertiesForKeys: nil)) ?? []
        return [root.appendingPathComponent("README.md"), root.appendingPathComponent("BENCHMARKS.md")] + docs.filter { $0.pathExtension == "md" }
    }

    @Test func linksStayInsideTheRepository() throws {
        #expect(Self.pages.count >= 4, "README, BENCHMARKS, docs/ARCHITECTURE and docs/API")
        for page in Self.pages {
            let text = try String(contentsOf: page, encoding: .utf8)
            for match in text.matches(of: /\]\(([^)\s]+)\)/) {
                let target = String(match.1)
                #expect(!target.contains("://") && !target.hasPrefix("//"), "\(page.lastPathComponent) links outside: \(target)")
                let path = target.split(separator: "#").first.map(String.init) ?? ""
                guard !path.isEmpty else { continue }
                let file = page.deletingLastPathComponent().appendingPathComponent(path).standardizedFileURL
                #expect(file.path.hasPrefix(Self.root.standardizedFileURL.path), "\(page.lastPathComponent) links above the repository: \(target)")
                #expect(FileManager.default.fileExists(atPath: file.path), "\(page.lastPathComponent) links to a missing \(target)")
            }
        }
    }

    @Test func theArchitecturePageNamesRealFiles() throws {
        let page = Self.root.appendingPathComponent("docs/ARCHITECTURE.md")
        let text = try String(contentsOf: page, encoding: .utf8)
        let named = Set(text.matches(of: /`((?:[A-Za-z]+\/)?[A-Z][A-Za-z+]*\.swift)`/).map { String($0.1) })
        #expect(named.count > 20)
        let files = ["Sources", "Tests"].flatMap { folder in
            FileManager.default.enumerator(atPath: Self.root.appendingPathComponent(folder).path)?.compactMap { $0 as? String } ?? []
        }
        for name in named {
            #expect(files.contains { $0 == name || $0.hasSuffix("/" + name) }, "docs/ARCHITECTURE.md names \(name), which does not exist")
        }
    }
}
