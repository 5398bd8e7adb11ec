// swift-tools-version:6.1
import Foundation
import PackageDescription

// tools/fuzz sets KEYWAY_LIBFUZZER=1 for its own build folder (.build-fuzz): Keyway's Swift modules then
// get libFuzzer's coverage counters and comparison tracing, and the dependencies do not (their
// counters would only slow every execution down). SwiftPM's own --sanitize=fuzzer reaches only the
// link step, where it supplies libFuzzer's main.
let libFuzzer = ProcessInfo.processInfo.environment["KEYWAY_LIBFUZZER"] != nil
let fuzzing: [SwiftSetting] = libFuzzer ? [.unsafeFlags(["-sanitize=fuzzer,address"]), .define("KEYWAY_LIBFUZZER")] : []

// Layers mirror the stack (see ../shared/DESIGN.md): lower modules never import higher ones.
let package = Package(
    name: "Keyway",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "keyway", targets: ["keyway"]),
        .executable(name: "keyway-bench", targets: ["KeywayBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CBlueZ", pkgConfig: "bluez",
                       providers: [.apt(["libbluetooth-dev"])]),

        .target(name: "KeywayCrypto", dependencies: ["COpenSSL"], swiftSettings: fuzzing),
        .target(name: "MobileKey", dependencies: ["KeywayCrypto"], swiftSettings: fuzzing),
        .target(name: "BLE", dependencies: ["CBlueZ"], swiftSettings: fuzzing),
        .target(name: "Hardware", dependencies: [
            "MobileKey",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: fuzzing),
        .target(name: "Events", dependencies: [
            "KeywayCrypto",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: fuzzing),
        // The control API's types, server protocol and client, generated from its OpenAPI document
        // (`make generate`, tools/generate-api; the document is bundled and served at /openapi.yaml).
        .target(name: "KeywayAPI", dependencies: [
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
        ], exclude: ["openapi-generator-config.yaml"], resources: [.copy("openapi.yaml")]),
        // The Kisi-compatible API's types and server protocol, generated from Sources/KisiAPI/openapi.yaml
        // (docs/kisi-openapi.yaml; tools/generate-api; docs/KISI.md).
        .target(name: "KisiAPI", dependencies: [
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
        ], exclude: ["openapi-generator-config.yaml", "openapi.yaml"]),
        .target(name: "Emulator", dependencies: [
            "KeywayCrypto", "MobileKey", "BLE", "Hardware", "Events", "KeywayAPI", "KisiAPI",
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: fuzzing),
        .executableTarget(name: "keyway", dependencies: [
            "Emulator", "KeywayCrypto", "MobileKey", "BLE", "Hardware", "Events", "KeywayAPI",
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "KeywayBench", dependencies: [
            "Emulator", "KeywayAPI", "KeywayCrypto", "MobileKey", "BLE", "Hardware", "Events",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),

        .executableTarget(name: "keyway-hil-peer", dependencies: ["BLE"]),  // tools/hil: BlueZ test peer

        // Fuzz targets (one per parser of outside bytes) and their driver; tools/fuzz builds the driver
        // with libFuzzer, `swift build` builds it as a replay/seed tool.
        .target(name: "KeywayFuzz", dependencies: ["Emulator", "KeywayCrypto", "MobileKey", "BLE", "Hardware", "KeywayAPI",
                                                  .product(name: "Hummingbird", package: "hummingbird"),
                                                  .product(name: "NIOEmbedded", package: "swift-nio"),
                                                  .product(name: "NIOCore", package: "swift-nio"),
                                                  .product(name: "HTTPTypes", package: "swift-http-types"),
                                                  .product(name: "Logging", package: "swift-log")],
                swiftSettings: fuzzing),
        .executableTarget(name: "keyway-fuzz", dependencies: ["KeywayFuzz"], swiftSettings: fuzzing),

        .testTarget(name: "KeywayCryptoTests", dependencies: ["KeywayCrypto"]),
        .testTarget(name: "MobileKeyTests", dependencies: ["MobileKey", "BLE"]),
        .testTarget(name: "BLETests", dependencies: ["BLE"]),
        .testTarget(name: "HardwareTests", dependencies: ["Hardware", "MobileKey", "KeywayCrypto"]),
        .testTarget(name: "EventsTests", dependencies: ["Events", "KeywayCrypto"]),
        .testTarget(name: "KeywayCLITests", dependencies: [
            "keyway", "Events", "KeywayAPI",
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),  // the `keyway` executable's command logic
        .testTarget(name: "EmulatorTests", dependencies: ["Emulator", "KeywayAPI", "Events", "Hardware", "MobileKey", "BLE"]),
        .testTarget(name: "KeywayFuzzTests", dependencies: ["KeywayFuzz", "MobileKey", "BLE", "Hardware"]),
    ],
    swiftLanguageModes: [.v6]
)
