import Foundation

/// The control API's OpenAPI document as SwiftPM bundles it beside the binary: the one source that the
/// types here are generated from (tools/generate-api) and that the server answers GET /openapi.yaml with.
public enum OpenAPIDocument {
    public static var url: URL? { Bundle.module.url(forResource: "openapi", withExtension: "yaml") }
}
