// swift-tools-version:6.1
// Builds apple/swift-openapi-generator's command-line tool for `make generate` (tools/generate-api),
// apart from Keyway's own package: the generated code is committed, so neither a build of Keyway nor
// CI's fresh clone pays for the generator (a build plugin would rebuild it in every new clone).
import PackageDescription

let package = Package(
    name: "keyway-openapi-generator",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-openapi-generator", exact: "1.14.3"),
    ],
    targets: []
)
