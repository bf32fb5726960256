// Starts the Firestore gRPC emulator on the port given as the first argument.
// Prints "ready <port>" once it listens; stops on SIGTERM/SIGINT.
const { FirestoreServer } = require("@firestore-emulator/server");

const port = Number(process.argv[2] || 8080);
const server = new FirestoreServer();
server.start(port).then(() => {
  console.log(`ready ${port}`);
});
const stop = () => {
  Promise.resolve(server.stop ? server.stop() : undefined).finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
