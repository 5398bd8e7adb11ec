import Foundation
import KeywayFuzz

// Two builds of one program:
// - with `-D KEYWAY_LIBFUZZER` and `--sanitize=fuzzer --sanitize=address` (tools/fuzz, `make fuzz`),
//   libFuzzer supplies `main` and calls the entry points below; KEYWAY_FUZZ_TARGET picks the target;
// - otherwise a plain tool: list the targets, replay inputs (to reproduce a crash without the
//   sanitizers), regenerate the seed corpora.

#if KEYWAY_LIBFUZZER

// Written once by LLVMFuzzerInitialize, before libFuzzer calls LLVMFuzzerTestOneInput (on the same
// thread); only read afterwards.
nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    // getenv, not ProcessInfo: nothing allocated here may outlive the call (LeakSanitizer checks at
    // exit, and `_exit` below skips that check only for these two early exits).
    if getenv("KEYWAY_FUZZ_LIST") != nil {
        // tools/fuzz asks the instrumented binary itself which targets it has, with their -max_len.
        for t in FuzzTargets.all { print("\(t.name) \(t.maxLength)") }
        fflush(nil)
        _exit(0)
    }
    let name = getenv("KEYWAY_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTargets.named(name) else {
        let message = "KEYWAY_FUZZ_TARGET must name one of: \(FuzzTargets.all.map(\.name).joined(separator: " "))\n"
        message.withCString { _ = write(2, $0, strlen($0)) }
        _exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selected else { return 0 }
    let input = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    do { try target.run(input) } catch {
        // libFuzzer saves the input as a crash artifact on abort.
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        abort()
    }
    return 0
}

#else

@main
struct KeywayFuzzTool {
    static func main() async {
        let args = Array(CommandLine.arguments.dropFirst())
        switch args.first {
        case "list":
            for t in FuzzTargets.all { print("\(t.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(t.summary)") }
        case "max-len":
            guard args.count == 2, let t = FuzzTargets.named(args[1]) else { usage() }
            print(t.maxLength)
        case "seeds":
            do {
                let seeds = try await FuzzSeeds.generate()
                try FuzzSeeds.write(seeds, to: FuzzPaths.corpusRoot)
                for (name, inputs) in seeds.sorted(by: { $0.key < $1.key }) { print("\(name): \(inputs.count) seeds") }
            } catch {
                FileHandle.standardError.write(Data("keyway-fuzz: seeds: \(error)\n".utf8)); exit(1)
            }
        case "run":
            guard args.count >= 3, let t = FuzzTargets.named(args[1]) else { usage() }
            var failed = false
            for path in args.dropFirst(2) {
                guard let data = FileManager.default.contents(atPath: path) else {
                    FileHandle.standardError.write(Data("keyway-fuzz: cannot read \(path)\n".utf8)); exit(1)
                }
                do { try t.run([UInt8](data)); print("\(path): ok") } catch {
                    print("\(path): \(error)"); failed = true
                }
            }
            exit(failed ? 1 : 0)
        default:
            usage()
        }
    }

    static func usage() -> Never {
        FileHandle.standardError.write(Data("""
        usage: keyway-fuzz list | max-len TARGET | seeds | run TARGET FILE...
        (the libFuzzer build is made by tools/fuzz; see `make fuzz`)

        """.utf8))
        exit(2)
    }
}

#endif
