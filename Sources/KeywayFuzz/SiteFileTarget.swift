import Foundation
import Hardware

/// The site file loader: YAML text from whoever edits the site. Either a configuration or a list of
/// diagnostics, each pointing inside the text (so `file:line:column` leads an editor somewhere real).
enum SiteFileFuzz {
    static let siteFile = FuzzTarget("site-file", maxLength: 16384,
        "SiteFile.parse(yaml:); a refusal lists 1…200 diagnostics, each on a line of the text; an accepted site has unique, indexed ids") { input, check in
        let text = String(decoding: input, as: UTF8.self)
        do {
            let config = try SiteFile.parse(yaml: text, file: "fuzz.yaml")
            // An accepted site is one the emulator can index: every id unique and found by its index.
            guard config.lockIndex.count == config.locks.count, config.iqIndex.count == config.iqs.count,
                  config.locks.indices.allSatisfy({ config.lockIndex[config.locks[$0].id] == $0 }) else {
                throw check.fail("accepted a site whose ids are not unique")
            }
        } catch let error as SiteFileError {
            guard !error.diagnostics.isEmpty, error.diagnostics.count <= SiteFile.maximumDiagnostics + 1 else {
                throw check.fail("\(error.diagnostics.count) diagnostics")
            }
            let lines = yamlLineCount(text)
            for d in error.diagnostics where d.line > lines + 1 || d.line < 0 || d.column < 0 {
                throw check.fail("diagnostic at \(d.line):\(d.column) outside a \(lines)-line text: \(d)")
            }
            guard error.diagnostics.allSatisfy({ $0.file == "fuzz.yaml" && !$0.message.isEmpty }) else {
                throw check.fail("a diagnostic without file or message")
            }
        } catch {
            throw check.fail("site file refused with \(type(of: error)), not SiteFileError")
        }
    }
}

/// Lines as YAML counts them (YAML 1.1 line breaks: CR LF, CR, LF, NEL, LS, PS), which is how the
/// parser numbers its positions. (Counting only LF made a lone CR look like a diagnostic past the end
/// of the file — a harness bug the fuzzer found; its input is kept as a regression file.)
func yamlLineCount(_ text: String) -> Int {
    var lines = 1
    var previousCR = false
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\r": lines += 1; previousCR = true; continue
        case "\n": if !previousCR { lines += 1 }
        case "\u{85}", "\u{2028}", "\u{2029}": lines += 1
        default: break
        }
        previousCR = false
    }
    return lines
}

