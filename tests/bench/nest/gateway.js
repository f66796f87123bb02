// The NestJS baseline: the "16-gateways-ws" sample's EventsGateway on the ws
// adapter, written in plain JavaScript so that no TypeScript build is needed.
// The decorators are applied with Reflect.decorate, which is what tsc emits
// for them; the classes and handlers are the sample's own.
//
// Usage: node gateway.js [PORT]   (or PORT=..., default 3000; HOST, default
// 127.0.0.1). The sample puts the gateway on its own port (8080) and serves
// HTTP on 3000; the benchmark only speaks WebSocket, so the gateway gets the
// port and the HTTP side is initialised but never listens.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WsAdapter } from '@nestjs/platform-ws';
import {
  SubscribeMessage,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import { from } from 'rxjs';
import { map } from 'rxjs/operators';

const port = Number(process.argv[2] || process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';

class EventsGateway {
  onEvent(client, data) {
    return from([1, 2, 3]).pipe(map((item) => ({ event: 'events', data: item })));
  }

  // async as in the sample: the reply goes through a Promise, like there.
  async identity(client, data) {
    return data;
  }
}

function decorateMethod(cls, name, decorators) {
  const proto = cls.prototype;
  const desc = Object.getOwnPropertyDescriptor(proto, name);
  Object.defineProperty(proto, name, Reflect.decorate(decorators, proto, name, desc));
}

decorateMethod(EventsGateway, 'onEvent', [SubscribeMessage('events')]);
decorateMethod(EventsGateway, 'identity', [SubscribeMessage('identity')]);
Reflect.decorate([WebSocketServer()], EventsGateway.prototype, 'server');
const Gateway = Reflect.decorate([WebSocketGateway(port, { host })], EventsGateway);

class EventsModule {}
const Events = Reflect.decorate([Module({ providers: [Gateway] })], EventsModule);

class AppModule {}
const App = Reflect.decorate([Module({ imports: [Events] })], AppModule);

async function bootstrap() {
  const app = await NestFactory.create(App, { logger: ['error', 'warn'] });
  app.useWebSocketAdapter(new WsAdapter(app));
  await app.init();
  console.log(`nest gateway listening on ws://${host}:${port}/ (pid ${process.pid})`);

  // Let SIGTERM from the benchmark script end the process at once.
  const stop = () => {
    app.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

bootstrap();
