// Runs mongo-java-server (an in-memory server speaking the MongoDB wire protocol) on 127.0.0.1:PORT for the
// test suite, and prints "listening" once it accepts connections.
//
// mongo-java-server 1.47 emulates MongoDB 5.0 but announces wire version 8 (MongoDB 4.2), which current
// drivers refuse (PyMongo 4.14+ needs 9). The handshake reply is corrected to 13, MongoDB 5.0's wire version;
// nothing else is changed.
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.ServerVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import io.netty.channel.Channel;

public final class MongoEmulator {
    private static final int MONGO_5_0_WIRE_VERSION = 13;

    static final class Backend extends MemoryBackend {
        @Override
        public Document handleCommand(Channel channel, String database, String command, Document query) {
            Document reply = super.handleCommand(channel, database, command, query);
            if (command.equalsIgnoreCase("ismaster")) {
                reply.put("maxWireVersion", MONGO_5_0_WIRE_VERSION);
            }
            return reply;
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: MongoEmulator PORT");
            System.exit(2);
        }
        MongoServer server = new MongoServer(new Backend().version(ServerVersion.MONGO_5_0));
        server.bind("127.0.0.1", Integer.parseInt(args[0]));
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
        System.out.println("listening");
        System.out.flush();
        Thread.currentThread().join();
    }
}
