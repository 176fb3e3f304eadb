// java.net.http.HttpClient (JDK 11+; TLS through JSSE, which s3slower cannot
// read) against an S3 endpoint: create a bucket, put, get and delete an
// object, delete the bucket; unsigned (moto does not check).  Prints one JSON
// line: pid, each call's status, the body bytes sent and received.
// Run: java [-Djavax.net.ssl.trustStore=...] JavaS3Ops.java BASE_URL BUCKET BODY_SIZE
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;

public class JavaS3Ops {
    public static void main(String[] args) throws Exception {
        String base = args[0], bucket = args[1];
        byte[] body = new byte[Integer.parseInt(args[2])];
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        List<Integer> statuses = new ArrayList<>();
        long sent = 0, received = 0;
        URI b = URI.create(base + "/" + bucket), o = URI.create(base + "/" + bucket + "/obj.bin");
        HttpRequest[] calls = {
            HttpRequest.newBuilder(b).PUT(HttpRequest.BodyPublishers.noBody()).build(),
            HttpRequest.newBuilder(o).PUT(HttpRequest.BodyPublishers.ofByteArray(body)).build(),
            HttpRequest.newBuilder(o).GET().build(),
            HttpRequest.newBuilder(o).DELETE().build(),
            HttpRequest.newBuilder(b).DELETE().build(),
        };
        for (HttpRequest r : calls) {
            HttpResponse<byte[]> resp = client.send(r, HttpResponse.BodyHandlers.ofByteArray());
            statuses.add(resp.statusCode());
            received += resp.body().length;
        }
        sent = body.length;
        System.out.println("{\"pid\": " + ProcessHandle.current().pid() + ", \"statuses\": "
                           + statuses + ", \"body_sent\": " + sent + ", \"body_received\": "
                           + received + "}");
    }
}
