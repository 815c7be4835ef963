package zt.serviceb.http;

import com.fasterxml.jackson.databind.JsonNode;

/** The outcome of one outbound /call request: a response from the target, or a contract error. */
public sealed interface CallResult {
    /** The target answered (any status); {@code body} is its JSON, or a JSON string if not JSON. */
    record Answered(String peer, String peerSerial, int status, JsonNode body) implements CallResult {
    }

    /** 502/504 with the contract's error code; peer fields are null when unknown. */
    record Failed(int httpStatus, String error, String reason, String peer, String peerSerial) implements CallResult {
    }
}
