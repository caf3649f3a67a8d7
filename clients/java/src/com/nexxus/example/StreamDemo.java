package com.nexxus.example;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.Struct;
import com.google.protobuf.util.JsonFormat;
import com.nexxus.v1.CreateObjectRequest;
import com.nexxus.v1.CreateObjectResponse;
import com.nexxus.v1.CreateSubscriptionRequest;
import com.nexxus.v1.DeviceServiceGrpc;
import com.nexxus.v1.Event;
import com.nexxus.v1.EventServiceGrpc;
import com.nexxus.v1.LoginRequest;
import com.nexxus.v1.LoginResponse;
import com.nexxus.v1.ObjectServiceGrpc;
import com.nexxus.v1.RegisterDeviceRequest;
import com.nexxus.v1.RegisterDeviceResponse;
import com.nexxus.v1.StreamEventsRequest;
import com.nexxus.v1.StreamEventsResponse;
import com.nexxus.v1.Subscription;
import com.nexxus.v1.UserServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The Java proof of the generated gRPC client (protoc's java generator and
 * protoc-gen-grpc-java via buf.gen.yaml, grpc-java from Maven Central): signs in,
 * registers a device, opens EventService.StreamEvents on a model, creates an
 * object and prints the event it receives for it.
 *
 * <pre>
 * java -cp ... com.nexxus.example.StreamDemo '{"target": "127.0.0.1:8080", "appId": "...",
 *     "login": "alice", "password": "...", "model": "task", "objectId": "x1", "data": {"title": "hi"}}'
 * </pre>
 *
 * Prints "READY &lt;json&gt;", "CREATED &lt;json&gt;" and "RESULT &lt;json&gt;" lines; exits 0,
 * or 1 with the error.
 */
public final class StreamDemo {
  private static final Gson GSON = new Gson();

  private StreamDemo() {}

  public static void main(String[] argv) {
    try {
      run(JsonParser.parseString(argv[0]).getAsJsonObject());
      System.exit(0);
    } catch (Exception e) {
      System.err.println("StreamDemo failed: " + e);
      e.printStackTrace();
      System.exit(1);
    }
  }

  private static Metadata bearer(String token) {
    Metadata md = new Metadata();
    md.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
    return md;
  }

  private static void emit(String tag, Object value) {
    System.out.println(tag + " " + GSON.toJson(value));
    System.out.flush();
  }

  private static void run(JsonObject a) throws Exception {
    String appId = a.get("appId").getAsString();
    String model = a.get("model").getAsString();
    String objectId = a.get("objectId").getAsString();
    ManagedChannel channel = ManagedChannelBuilder.forTarget(a.get("target").getAsString()).usePlaintext().build();
    try {
      LoginResponse login = UserServiceGrpc.newBlockingStub(channel)
          .withDeadlineAfter(30, TimeUnit.SECONDS)
          .login(LoginRequest.newBuilder()
              .setAppId(appId)
              .setLogin(a.get("login").getAsString())
              .setPassword(a.get("password").getAsString())
              .build());
      RegisterDeviceResponse device = DeviceServiceGrpc.newBlockingStub(channel)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(bearer(login.getTokens().getAccessToken())))
          .withDeadlineAfter(30, TimeUnit.SECONDS)
          .registerDevice(RegisterDeviceRequest.newBuilder()
              .setAppId(appId).setName("java-client").setPlatform("server").setTransport("grpc").build());
      Metadata auth = bearer(device.getTokens().getAccessToken());

      Struct.Builder data = Struct.newBuilder();
      JsonFormat.parser().merge(GSON.toJson(a.get("data")), data);
      ObjectServiceGrpc.ObjectServiceBlockingStub objects = ObjectServiceGrpc.newBlockingStub(channel)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(auth));

      Iterator<StreamEventsResponse> stream = EventServiceGrpc.newBlockingStub(channel)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(auth))
          .withDeadlineAfter(60, TimeUnit.SECONDS)
          .streamEvents(StreamEventsRequest.newBuilder()
              .setAppId(appId)
              .addSubscriptions(CreateSubscriptionRequest.newBuilder().setModel(model).build())
              .setHeartbeatSeconds(5)
              .build());
      while (stream.hasNext()) {
        StreamEventsResponse frame = stream.next();
        switch (frame.getFrameCase()) {
          case READY: {
            List<String> ids = new ArrayList<>();
            for (Subscription s : frame.getReady().getSubscriptionsList()) {
              ids.add(s.getId());
            }
            Map<String, Object> ready = new LinkedHashMap<>();
            ready.put("deviceId", frame.getReady().getDeviceId());
            ready.put("subscriptions", ids);
            emit("READY", ready);
            CreateObjectResponse created = objects.withDeadlineAfter(30, TimeUnit.SECONDS)
                .createObject(CreateObjectRequest.newBuilder()
                    .setAppId(appId).setModel(model).setObjectId(objectId).setData(data).setWait(true).build());
            emit("CREATED", Map.of("operationId", created.getOperation().getOperationId()));
            break;
          }
          case EVENT:
            if (report(frame.getEvent(), objectId)) {
              return;
            }
            break;
          case BATCH:
            for (Event e : frame.getBatch().getEventsList()) {
              if (report(e, objectId)) {
                return;
              }
            }
            break;
          case ERROR:
            throw new IllegalStateException(
                "stream error " + frame.getError().getCode() + ": " + frame.getError().getMessage());
          default:
            break;
        }
      }
      throw new IllegalStateException("stream ended before the event");
    } finally {
      channel.shutdownNow();
    }
  }

  /** Prints the RESULT line for the event of the object we created. */
  private static boolean report(Event e, String objectId) throws Exception {
    if (!e.getObjectId().equals(objectId)) {
      return false;
    }
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("kind", e.getKind().name());
    result.put("objectId", e.getObjectId());
    result.put("version", Long.toString(e.getVersion()));
    result.put("operationId", e.getOperationId());
    result.put("data", JsonParser.parseString(JsonFormat.printer().print(e.getObject().getData())));
    emit("RESULT", result);
    return true;
  }
}
